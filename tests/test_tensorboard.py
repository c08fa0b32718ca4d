"""The TensorBoard dashboards, read back through a real TensorBoard server's HTTP API.

One runs folder as researchers have it, served whole (``tensorboard --logdir runs``), with more
than 40 runs: a real smoke sweep (small MNIST, a narrow net, 4 epochs of 20 steps) with
finished, diverged (lr 1000) and unfinished members, trained and analysed twice, beside three
sweeps of other experiments written directly in the trainer's formats (an autoencoder
learning-rate sweep with diverged members, a CIFAR sweep with and without BN, one member still
training). Every check compares what the server says with the run files (metrics.jsonl,
member.json, summary.json, provenance.json) or, for what the browser does with a URL, with the
rule of TensorBoard's frontend that decides it (quoted where it is used).
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest

from elurepro import train as train_module
from elurepro.analysis.collect import collect_members
from elurepro.analysis.context import Analysis
from elurepro.analysis.report import analyze
from elurepro.analysis.sweeps import partition
from elurepro.analysis.tb_export import EXPERIMENT_FILE, export
from elurepro.runlog import (
    DASHBOARD,
    DASHBOARD_FORMAT,
    MemberLog,
    sweep_tag,
    write_dashboard,
    write_summary,
)
from elurepro.train import run
from elurepro.trainer import LoopConfig
from tests.analysis_fakes import run_folder, run_info
from tests.hydra_utils import load_config
from tests.train_utils import train

pytest.importorskip("tensorboard")

SMOKE = [
    "experiment=mnist_meanact",
    "budget=smoke",
    "budget.max_steps=80",  # 4 epochs of 20 steps: one log point per epoch
    "progress=false",
    "data.download=false",
    "model.sizes=[784,32,32,10]",
]
UNITS = "members.activations=[elu,relu,{name:lrelu,alpha:0.3}]"
COMMAND = "python -m elurepro.train experiment=mnist_meanact budget=smoke (test)"
WAIT_S = 120  # the longest a query waits for TensorBoard to have read everything
ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
LIVE = "mnist_meanact/mnist-demo"  # the sweep of the member that is still training


# ---------------------------------------------------------------- the runs folder


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _members(runs: Path) -> dict[str, dict]:
    """run name (member folder relative to the runs folder) -> what the member's files say."""
    out = {}
    for info in sorted(runs.rglob("member.json")):
        folder = info.parent
        summary = folder / "summary.json"
        summary = json.loads(summary.read_text()) if summary.exists() else {}
        out[folder.relative_to(runs).as_posix()] = {
            "folder": folder,
            "info": json.loads(info.read_text()),
            "records": _read_jsonl(folder / "metrics.jsonl"),
            "status": summary.get("status", "unfinished"),
            "diverged_at": summary.get("diverged_at_step"),
            "provenance": json.loads((folder / "provenance.json").read_text()),
            "sweep": folder.parent.parent.relative_to(runs).as_posix(),
        }
    return out


def _last_by_step(records: list[dict], tag: str) -> dict[int, float]:
    """step -> value of `tag`; a step logged twice keeps its later line (as the analysis does)."""
    return {r["step"]: float(r[tag]) for r in records if tag in r}


def _fake_member(runs: Path, info: dict, records: list[dict], status: str | None) -> None:
    """A member folder as the trainer leaves it (through its own writers): metrics and events,
    provenance, and once it has ended its summary and dashboard file."""
    folder = run_folder(runs, info)
    member = {k: v for k, v in info.items() if not k.startswith("_")}
    provenance = {
        "device": "cpu",
        "torch": "2.x",
        "git_commit": "fake",
        "data": member["data"],
        "budget": member["budget"],
        "config": {"train": {"unit": "epoch"}},
    }
    log = MemberLog(folder, member, None, epoch_axis=True)
    (folder / "provenance.json").write_text(json.dumps(provenance))
    log.dashboard(provenance, "unfinished")
    for record in records:
        log.log(record)
    log.close()
    if status is None:
        return
    final = {k: v for r in records for k, v in r.items() if "/" in k}
    diverged_at = records[-1]["step"] + 5 if status == "diverged" else None
    write_summary(
        folder,
        {"status": status, "diverged_at_step": diverged_at, "final": final, **provenance},
    )
    write_dashboard(folder, member, provenance, status)


def _fake_sweeps(runs: Path) -> None:
    """An autoencoder learning-rate sweep (ReLU at lr 1 diverges), a CIFAR sweep with and
    without BN, and a member still training in a sweep of its own."""
    for unit in ("elu", "relu"):
        for lr in (0.01, 1.0):
            for seed in range(3):
                info = run_info(
                    "mnist_autoencoder",
                    "mnist",
                    unit,
                    seed,
                    lr=lr,
                    lr_in_group=True,
                    budget="short",
                    official=False,
                )
                diverged = unit == "relu" and lr == 1.0
                records = [
                    {
                        "step": 10 * e,
                        "epoch": e,
                        "train/recon_error": 9.0 / (e + 1) + 0.1 * seed + lr,
                        "test/recon_error": 10.0 / (e + 1) + 0.1 * seed + lr,
                    }
                    for e in range(3 if diverged else 5)
                ]
                _fake_member(runs, info, records, "diverged" if diverged else "finished")
    for unit in ("elu", "relu"):
        for bn in (False, True):
            for seed in range(4):
                info = run_info(
                    "cifar100_11layer",
                    "cifar100",
                    unit,
                    seed,
                    batchnorm=bn,
                    budget="short",
                    official=False,
                )
                records = [
                    {
                        "step": 500 * e,
                        "epoch": e,
                        "train/loss": 4.0 / (e + 1) + 0.01 * seed,
                        "test/error": 80.0 / (e + 1) + bn + seed,
                    }
                    for e in range(1, 5)
                ]
                _fake_member(runs, info, records, "finished")
    info = run_info("mnist_meanact", "mnist", "elu", 0, budget="demo", official=False)
    _fake_member(runs, info, [{"step": 10, "epoch": 1, "train/loss": 1.0}], None)
    for experiment in ("mnist_autoencoder", "cifar100_11layer"):
        for sweep in partition(collect_members(runs / experiment)):
            a = Analysis(experiment, runs, runs / "out", sweep.members, [])
            assert export(runs, sweep.members, {}, experiment, a).startswith("TensorBoard:")


class Server:
    def __init__(self, logdir: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "1"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )

    def get(self, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_for(self, what: str, query, ready) -> object:
        """`query()` once `ready(result)` holds; fails after WAIT_S seconds."""
        deadline = time.monotonic() + WAIT_S
        result = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"TensorBoard exited with {self.proc.returncode}")
            try:
                result = query()
                if ready(result):
                    return result
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            time.sleep(0.5)
        pytest.fail(f"TensorBoard did not serve {what} within {WAIT_S} s (last: {result!r})")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self.log.close()


def _has_session(path: Path) -> bool:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return any(
        v.tag == "_hparams_/session_start_info"
        for event in EventFileLoader(str(path)).Load()
        for v in event.summary.value
    )


@pytest.fixture(scope="module")
def board(tmp_path_factory, mnist_root):
    tmp = tmp_path_factory.mktemp("tensorboard")
    runs = tmp / "runs"
    base = [*SMOKE, f"data.root={mnist_root}", f"runs_dir={runs}"]
    train_module._command = COMMAND  # as `main` records it for the command line
    try:
        assert run(load_config(*base, UNITS, "members.lrs=[0.01,1000]")) == 0
    finally:
        train_module._command = None
    # One more member in the same sweep, interrupted half way: unfinished.
    cfg = load_config(
        *base,
        "members.activations=[{name:elu,alpha:0.5}]",
        "members.lrs=[0.01]",
        "members.seeds=[0]",
    )
    sweep, status = train(cfg, stop_at=40)
    assert status == "interrupted"
    real = _members(runs)
    prefix = sweep.root.relative_to(runs).as_posix() + "/"
    assert sorted({m["status"] for m in real.values()}) == ["diverged", "finished", "unfinished"]
    # What the trainer wrote, before any analysis: one dashboard file, of the member's status.
    trained = {
        name: [(p.name, _has_session(p)) for p in sorted(m["folder"].glob(f"{DASHBOARD}.*"))]
        for name, m in real.items()
    }
    # A member trained before sessions existed, and one whose status went stale (its trainer was
    # killed between summary.json and the dashboard file): the analysis must put both right.
    missing, stale = prefix + "relu-lr0.01/s1", prefix + "elu-lr0.01/s1"
    for path in real[missing]["folder"].glob(f"{DASHBOARD}.*"):
        path.unlink()
    m = real[stale]
    write_dashboard(m["folder"], m["info"], m["provenance"], "unfinished")
    for _ in range(2):  # a second analysis must not add a second copy of anything
        result = analyze("mnist_meanact", sweep.root, tmp / "out")
        assert result.tensorboard and result.tensorboard.startswith("TensorBoard:"), result
    _fake_sweeps(runs)
    members = _members(runs)
    server = Server(runs, tmp / "tensorboard.log")
    try:
        server.wait_for(
            "every run", lambda: server.get("/data/runs"), lambda r: set(members) <= set(r)
        )
        # Listed is not yet read: wait until every member's scalars are there too.
        logged = {n: {k for r in m["records"] for k in r if "/" in k} for n, m in members.items()}
        server.wait_for(
            "every member's scalars",
            lambda: server.get("/data/plugin/scalars/tags"),
            lambda tags: all(logged[n] <= set(tags.get(n, ())) for n in members),
        )
        yield {
            "server": server,
            "runs": runs,
            "root": sweep.root,
            "prefix": prefix,
            "members": members,
            "real": {n: m for n, m in members.items() if n.startswith(prefix)},
            "trained": trained,
            "fixed": (missing, stale),
            "note": result.tensorboard,
        }
    finally:
        server.stop()


def _session_groups(board) -> list[dict]:
    server = board["server"]
    request = {
        "experimentName": "",
        "allowedStatuses": ALL_STATUSES,
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 1000,
    }
    count = sum(m["status"] != "unfinished" for m in board["members"].values())
    return server.wait_for(
        "every HParams session",
        lambda: server.get("/data/plugin/hparams/session_groups", request)["sessionGroups"],
        lambda groups: sum(len(g["sessions"]) for g in groups) >= count,
    )


def _hparams(group: dict) -> dict:
    """A row's values by column (``1.unit`` -> ``unit``)."""
    return {name.split(".", 1)[1]: value for name, value in group["hparams"].items()}


def _metrics(entry: dict) -> dict:
    return {v["name"]["tag"]: v["value"] for v in entry["metricValues"]}


def _urls(note: str) -> dict[str, str]:
    """The URLs the analysis printed, by what they open."""
    found = dict(re.findall(r"^\s+(.+?): (http\S+)$", note, re.MULTILINE))
    assert set(found) == {"the figure, mean per configuration", "mean ± std bands (Custom Scalars)"}
    return found


# ---------------------------------------------------------------- checks


def test_the_trainer_writes_one_dashboard_file_a_session_once_the_member_ended(board) -> None:
    for name, files in board["trained"].items():
        status = board["real"][name]["status"]
        # The session is written once, final: TensorBoard keeps the first one it reads.
        assert files == [(f"{DASHBOARD}.{status}.{DASHBOARD_FORMAT}", status != "unfinished")]


def test_the_whole_runs_folder_is_served_with_more_than_40_runs(board) -> None:
    members = board["members"]
    runs = set(board["server"].get("/data/runs"))
    assert len(runs) > 40
    assert set(members) <= runs
    # Only runs whose names start with "_" are added; none per member, no HParams runs.
    extra = {r.split("/_", 1)[1].split("/")[0] for r in runs - set(members)}
    assert extra == {"analysis", "mean_std"}
    for name, m in members.items():
        assert name.endswith(f"/{m['info']['group']}/s{m['info']['seed']}")
    # Run names filter by unit: -elu- selects exactly the ELU (alpha 1) members of the sweep.
    elu = {r for r in runs if r.startswith(board["prefix"] + "elu-")}
    assert elu == {n for n, m in board["real"].items() if m["info"]["group"].startswith("elu-")}


def test_scalars_are_the_member_logs_and_a_divergence_ends_them_with_nan(board) -> None:
    server = board["server"]
    tags = server.get("/data/plugin/scalars/tags")
    for name, m in board["real"].items():
        logged = {k for r in m["records"] for k in r if "/" in k or k in ("lr", "epoch")}
        hp = {"hp/abs_median_activation", "hp/early_train_loss"}
        assert set(tags[name]) == logged | (hp if m["status"] == "finished" else set()), name
    for name, m in board["real"].items():
        if m["status"] != "diverged":
            continue
        # The last line of each metric is a NaN at the divergence (summary.json's iteration).
        for tag in {k for r in m["records"] for k in r if "/" in k}:
            last = max(_last_by_step(m["records"], tag).items())
            assert last[0] == m["diverged_at"] and math.isnan(last[1]), (name, tag)
    name = board["prefix"] + "elu-lr0.01/s0"
    m = board["members"][name]
    for tag in ("train/loss", "val/error", "act/median", "act/median/layer2", "lr", "epoch"):
        query = f"/data/plugin/scalars/scalars?run={name}&tag={tag}"
        served = {step: value for _, step, value in server.get(query)}
        assert served.keys() == _last_by_step(m["records"], tag).keys(), tag
        for step, value in _last_by_step(m["records"], tag).items():
            assert served[step] == pytest.approx(value, rel=1e-6), (tag, step)


def test_hparams_show_the_protocols_headline_of_each_finished_member(board) -> None:
    server = board["server"]
    for name, m in board["real"].items():
        if m["status"] != "finished":
            continue
        epochs = [r for r in m["records"] if r.get("epoch", 0) > 0]
        median = [r["act/median"] for r in epochs if "act/median" in r]
        loss = [r["train/loss"] for r in epochs if "train/loss" in r]
        # Fig. 2: |mean over the training epochs of the median activation|, and the mean
        # training loss over epochs 1–H (H: 25, or the last epoch of a shorter run).
        expected = {
            "hp/abs_median_activation": abs(np.mean(median)),
            "hp/early_train_loss": np.mean(loss),
        }
        for tag, value in expected.items():
            ((_, step, served),) = server.get(f"/data/plugin/scalars/scalars?run={name}&tag={tag}")
            assert served == pytest.approx(value, rel=1e-5) and step == m["records"][-1]["step"]


def test_one_hparams_experiment_covers_every_sweep_of_the_folder(board) -> None:
    experiment = board["server"].get("/data/plugin/hparams/experiment", {"experimentName": ""})
    columns = {h["name"].split(".", 1)[1]: h for h in experiment["hparamInfos"]}
    ended = [m for m in board["members"].values() if m["status"] != "unfinished"]
    infos = [m["info"] for m in ended]
    # Not elu_alpha0.5 nor the demo sweep: their members are still training (no session yet).
    assert set(columns["unit"]["domainDiscrete"]) == {"elu", "relu", "lrelu_alpha0.3"}
    assert set(columns["lr"]["domainDiscrete"]) == {i["lr"] for i in infos}
    assert set(columns["batchnorm"]["domainDiscrete"]) == {True, False}
    assert set(columns["experiment"]["domainDiscrete"]) == {
        "mnist_meanact",
        "mnist_autoencoder",
        "cifar100_11layer",
    }
    sweeps = {m["sweep"] for m in ended}
    assert len(columns["sweep"]["domainDiscrete"]) == len(sweeps) == 3
    assert columns["status"]["domainDiscrete"] == ["finished", "diverged"]
    diverged_at = {m["diverged_at"] for m in ended if m["status"] == "diverged"}
    domain = columns["diverged_at"].get("domainDiscrete") or [
        columns["diverged_at"]["domainInterval"][k] for k in ("minValue", "maxValue")
    ]
    assert min(domain) == min(diverged_at) and max(domain) == max(diverged_at)
    assert "seed" not in columns  # a row is a configuration: the mean over its seeds
    for column in ("unit", "status", "experiment", "sweep"):
        assert columns[column]["type"] == "DATA_TYPE_STRING", column
    assert columns["batchnorm"]["type"] == "DATA_TYPE_BOOL"
    assert columns["lr"]["type"] == columns["activation_alpha"]["type"] == "DATA_TYPE_FLOAT64"
    # The tab shows the first five columns, those whose values differ first, in the order the
    # server gives them (tf-hparams-query-pane's _computeHParams: a stable sort on `differs`).
    shown = sorted(experiment["hparamInfos"], key=lambda h: not h.get("differs", False))[:5]
    assert [h["displayName"] for h in shown][:2] == ["unit", "status"]
    # Metric columns: the protocol's headline quantities of every experiment, then the last
    # values of the headline metrics.
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    hp = [m for m in metrics if m.startswith("hp/")]
    assert metrics[: len(hp)] == hp and {
        "hp/abs_median_activation",
        "hp/test_recon_error",
        "hp/test_error",
    } <= set(hp)
    assert {"train/loss", "test/error", "act/median", "test/recon_error"} <= set(metrics)
    assert not [m for m in metrics if m == "lr" or "/layer" in m]


def test_every_analysis_run_holds_the_same_experiment(board) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    copies = sorted(board["runs"].glob(f"*/*/*/_analysis/{EXPERIMENT_FILE}"))
    assert len(copies) == 3  # one per analysed sweep: TensorBoard may read any of them first
    experiments = set()
    for path in copies:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.EXPERIMENT_TAG:
                    content = value.metadata.plugin_data.content
                    experiments.add(
                        metadata.parse_experiment_plugin_data(content).SerializeToString()
                    )
    assert len(experiments) == 1


def test_hparams_rows_are_configurations_and_diverged_members(board) -> None:
    members = board["members"]
    groups = _session_groups(board)
    sessions = {s["name"]: (g, s) for g in groups for s in g["sessions"]}
    # One session per member that has ended, in its own run; none for one still training.
    assert set(sessions) == {n for n, m in members.items() if m["status"] != "unfinished"}
    expected_status = {"finished": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE"}
    for name, (group, session) in sessions.items():
        m = members[name]
        info = m["info"]
        row = _hparams(group)
        assert session["status"] == expected_status[m["status"]], name
        assert row["status"] == m["status"]
        assert row["unit"] == info["group"].split("-")[0].split("+")[0]
        assert row["sweep"].startswith(f"@{sweep_tag(m['folder'])} ")
        # The row name (Trial ID, a 10em column): the configuration and a 4-digit sweep tag.
        if m["status"] == "finished":
            assert group["name"] == f"{info['group']} @{sweep_tag(m['folder'])}"
            assert "diverged_at" not in row
        else:
            assert group["name"] == f"{info['group']}/s{info['seed']} @{sweep_tag(m['folder'])}"
            assert [s["name"] for s in group["sessions"]] == [name]
            assert row["diverged_at"] == m["diverged_at"]
    # A finished row is one configuration of one sweep: every finished seed, the mean of each.
    for group in groups:
        names = [s["name"] for s in group["sessions"]]
        assert len({members[n]["sweep"] for n in names}) == 1, group["name"]
        assert len({members[n]["info"]["group"] for n in names}) == 1, group["name"]
    prefix = board["prefix"]
    group, _ = sessions[prefix + "elu-lr0.01/s0"]
    assert sorted(s["name"] for s in group["sessions"]) == [
        prefix + "elu-lr0.01/s0",
        prefix + "elu-lr0.01/s1",
    ]
    finals = [_last_by_step(members[n]["records"], "train/loss")[80] for n in _names(group)]
    assert _metrics(group)["train/loss"] == pytest.approx(np.mean(finals), rel=1e-6)


def _names(group: dict) -> list[str]:
    return [s["name"] for s in group["sessions"]]


def test_a_diverged_member_shows_no_result(board) -> None:
    for group in _session_groups(board):
        if _hparams(group)["status"] != "diverged" or _names(group)[0] not in board["real"]:
            continue  # (the other sweeps' members are written without the trainer)
        # Its metrics end with a NaN, which the tab leaves empty (tf-hparams' table: a "NaN"
        # value is no value); no headline quantity at all.
        values = _metrics(group)
        assert values and all(v == "NaN" for v in values.values()), (group["name"], values)


def test_the_analysis_writes_missing_and_stale_sessions_once(board) -> None:
    for name, m in board["real"].items():
        files = sorted(p.name for p in m["folder"].glob(f"{DASHBOARD}.*"))
        assert files == [f"{DASHBOARD}.{m['status']}.{DASHBOARD_FORMAT}"], name
    missing, stale = board["fixed"]
    sessions = {s["name"]: g for g in _session_groups(board) for s in g["sessions"]}
    assert _hparams(sessions[missing])["status"] == "finished"
    assert _hparams(sessions[stale])["status"] == "finished"
    root = board["root"]
    for folder in [root / "_analysis", *(root / "_mean_std").iterdir()]:
        assert len(list(folder.glob("*tfevents*"))) == 1 + (folder.name == "_analysis"), folder


def test_histograms_hold_the_per_unit_mean_activations(board) -> None:
    server = board["server"]
    tags = server.get("/data/plugin/histograms/tags")
    name = board["prefix"] + "relu-lr0.01/s0"
    m = board["members"][name]
    assert sorted(tags[name]) == ["act/units/layer1", "act/units/layer2"]
    for layer in (1, 2):
        medians = _last_by_step(m["records"], f"act/median/layer{layer}")
        query = f"/data/plugin/histograms/histograms?run={name}&tag=act/units/layer{layer}"
        served = {step: buckets for _, step, buckets in server.get(query)}
        assert served.keys() == medians.keys()  # every monitor point, and only those
        for step, buckets in served.items():
            assert sum(count for _, _, count in buckets) == pytest.approx(32)  # 32 units
            low, high = buckets[0][0], buckets[-1][1]
            assert low - 1e-6 <= medians[step] <= high + 1e-6


def test_custom_scalars_show_each_sweeps_mean_and_std_over_seeds(board) -> None:
    server = board["server"]
    members = board["members"]
    categories = server.get("/data/plugin/custom_scalars/layout")["category"]
    assert len(categories) == 3  # one per analysed sweep
    tags = server.get("/data/plugin/scalars/tags")
    for category in categories:
        # A chart's series are the tags of one sweep only: it never draws another's runs.
        owners = set()
        for chart in category["chart"]:
            for series in chart["margin"]["series"]:
                owners |= {
                    r.split("/_mean_std/")[0] for r, t in tags.items() if series["value"] in t
                }
        assert len(owners) == 1, category["title"]
    label = "/".join(board["prefix"].rstrip("/").split("/")[-2:])  # <data>-<budget>/d…-c…
    (category,) = [c for c in categories if label in c["title"]]
    assert "x = epoch" in category["title"]
    charts = {c["title"].split(": ")[0]: c for c in category["chart"]}
    assert {"train/loss", "val/error", "act/median"} <= set(charts)
    finished = sorted(
        {m["info"]["group"] for m in board["real"].values() if m["status"] == "finished"}
    )
    for chart in charts.values():  # the chart's title names the lines it draws
        assert chart["title"].split(": ")[1] == ", ".join(finished)
    run = board["prefix"] + "_mean_std/relu-lr0.01"
    for metric in ("train/loss", "act/median"):
        (series,) = charts[metric]["margin"]["series"]
        query = f"/data/plugin/custom_scalars/scalars?run={run}&tag=" + urllib.request.quote(
            f"^{re.escape(series['value'])}(/lower|/upper)?$"
        )
        payload = server.get(query)["tag_to_events"]
        value, lower, upper = (
            {step: v for _, step, v in payload[series[k]]} for k in ("value", "lower", "upper")
        )
        runs = [
            m["records"]
            for n, m in members.items()
            if n.startswith(board["prefix"] + "relu-lr0.01/")
        ]
        by_epoch = [{int(r["epoch"]): float(r[metric]) for r in rs if metric in r} for rs in runs]
        epochs = sorted(set.intersection(*(set(e) for e in by_epoch)))
        assert sorted(value) == epochs and epochs[-1] == 4  # steps are epochs 0..4
        for epoch in epochs:
            ys = [e[epoch] for e in by_epoch]
            mean, std = np.mean(ys), np.std(ys, ddof=1)
            assert value[epoch] == pytest.approx(mean, rel=1e-5, abs=1e-7)
            assert upper[epoch] - lower[epoch] == pytest.approx(2 * std, rel=1e-4, abs=1e-6)


def test_the_printed_urls_show_the_figure_in_the_whole_folder(board) -> None:
    server = board["server"]
    runs = server.get("/data/runs")
    mean_runs = {r for r in runs if r.startswith(board["prefix"] + "_mean_std/")}
    urls = _urls(board["note"])
    figure = urlsplit(urls["the figure, mean per configuration"])
    assert figure.fragment == "timeseries"
    params = {k: v[0] for k, v in parse_qs(figure.query).items()}
    assert params["smoothing"] == "0"
    # Time Series matches its filters case-insensitively anywhere in the name (its _T and
    # card filter: new RegExp(filter, "i").test(name)) and enables up to 500 runs by default.
    matched = {r for r in runs if re.search(params["runFilter"], r, re.IGNORECASE)}
    assert matched == mean_runs
    cards = {t for r in matched for t in server.get("/data/plugin/scalars/tags")[r]}
    shown = {t for t in cards if re.search(params["tagFilter"], t, re.IGNORECASE)}
    assert {t.split("/", 1)[1] for t in shown} == {"act/median", "train/loss"}  # Fig. 2
    # runColorGroup=regex:...: runs whose capture groups agree share a colour.
    kind, colour = params["runColorGroup"].split(":", 1)
    assert kind == "regex"
    colours = {re.search(colour, r).groups() for r in matched}
    assert len(colours) == len(matched)  # one colour per configuration
    # Custom Scalars (the Polymer run selector, tf-multi-checkbox's computeOutSelected): with
    # no ticks, the runs matching the filter are all enabled when at most 40 match, else none.
    bands = urlsplit(urls["mean ± std bands (Custom Scalars)"]).fragment.split("&")
    state = dict(part.split("=", 1) for part in bands[1:])
    assert bands[0] == "custom_scalars" and state["_smoothingWeight"] == "0"
    enabled = {r for r in runs if re.search(unquote(state["regexInput"]), r)}
    assert enabled == mean_runs and len(enabled) <= 40


def test_the_url_after_training_shows_the_members(board) -> None:
    from elurepro.tblinks import figure_tags, members_url

    runs = board["server"].get("/data/runs")
    url = urlsplit(members_url(board["root"], figure_tags("mnist_meanact")))
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    matched = {r for r in runs if re.search(params["runFilter"], r, re.IGNORECASE)}
    assert matched == set(board["real"])
    colour = params["runColorGroup"].split(":", 1)[1]
    groups = {re.search(colour, r).groups()[0] for r in matched}
    assert groups == {m["info"]["group"] for m in board["real"].values()}


def test_each_member_shows_its_configuration_and_provenance_as_text(board) -> None:
    server = board["server"]
    name = board["prefix"] + "lrelu_alpha0.3-lr1000/s1"
    m = board["members"][name]
    assert sorted(server.get("/data/plugin/text/tags")[name]) == ["config", "provenance"]
    ((_, provenance),) = [
        (e["step"], e["text"])
        for e in server.get(f"/data/plugin/text/text?run={name}&tag=provenance")
    ]
    prov = m["provenance"]
    for expected in (
        prov["git_commit"],
        prov["data"]["fingerprint"],
        prov["device"],
        prov["torch"],
        f"diverged at iteration {m['diverged_at']}",
        COMMAND.replace("(", "").split()[0],
    ):
        assert expected in provenance, expected
    assert prov["command"] == COMMAND and "official data" in provenance
    assert re.search(r"official data</td>\s*<td>false", provenance)  # the toy MNIST
    (config,) = server.get(f"/data/plugin/text/text?run={name}&tag=config")
    assert f"batch_size: {prov['config']['train']['batch_size']}" in config["text"]
    assert "sizes:" in config["text"] and math.isfinite(config["step"])


def test_a_running_tensorboard_shows_a_member_once_it_ends(board) -> None:
    """Last: it finishes a member of the served folder."""
    server = board["server"]
    ((name, m),) = [(n, m) for n, m in board["members"].items() if n.startswith(LIVE)]
    assert name not in {s["name"] for g in _session_groups(board) for s in g["sessions"]}
    write_summary(m["folder"], {"status": "finished", "final": {}, **m["provenance"]})
    write_dashboard(m["folder"], m["info"], m["provenance"], "finished")
    request = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": []}
    request |= {"startIndex": 0, "sliceSize": 1000}
    groups = server.wait_for(
        "the session of the member that ended",
        lambda: server.get("/data/plugin/hparams/session_groups", request)["sessionGroups"],
        lambda gs: any(name in _names(g) for g in gs),
    )
    ((group, session),) = [(g, s) for g in groups for s in g["sessions"] if s["name"] == name]
    assert group["name"] == f"elu @{sweep_tag(m['folder'])}"
    assert session["status"] == "STATUS_SUCCESS" and _hparams(group)["status"] == "finished"


# ---------------------------------------------------------------- pieces, without a server


def test_log_points_cover_whole_intervals() -> None:
    # The demo budget of mnist_meanact: 2,346 iterations, a log point every 586.
    loop = LoopConfig(total_steps=2346, log_every=586, eval_every=586, act_every=586)
    for kind in ("train_log", "evaluate", "activations"):
        points = [s for s in range(loop.total_steps + 1) if getattr(loop.events(s), kind)]
        start = [0] if kind != "train_log" else []
        assert points == start + [586, 1172, 1758, 2346], kind  # not 2344 and 2346
        intervals = np.diff([0, *points])
        assert intervals[intervals > 0].min() >= 586
    # A run that ends on a multiple keeps every one.
    loop = LoopConfig(total_steps=80, log_every=20, eval_every=20)
    assert [s for s in range(81) if loop.events(s).train_log] == [20, 40, 60, 80]


def test_the_monitor_hands_out_the_per_unit_means_behind_its_medians() -> None:
    import torch
    from torch import nn

    from elurepro.models.population import MemberList
    from elurepro.monitor import ActivationMonitor, Probe

    torch.manual_seed(0)

    pop = MemberList(
        [
            nn.Sequential(nn.Linear(5, 7), nn.ELU(), Probe(), nn.Linear(7, 4), nn.ReLU(), Probe())
            for _ in range(2)
        ]
    )
    x = torch.randn(50, 5)
    medians, units = ActivationMonitor(pop, 2).measure_units(lambda: [m(x) for m in pop.members])
    assert [[len(u) for u in layer] for layer in units] == [[7, 7], [4, 4]]
    with torch.no_grad():
        for k, member in enumerate(pop.members):
            first = member[:3](x).double().mean(dim=0)  # each unit's mean over the images
            second = member(x).double().mean(dim=0)
            torch.testing.assert_close(units[0][k], first)
            torch.testing.assert_close(units[1][k], second)
            torch.testing.assert_close(medians["act/median/layer1"][k], first.quantile(0.5))
            pooled = torch.cat([first, second]).quantile(0.5)
            torch.testing.assert_close(medians["act/median"][k], pooled)


def test_histograms_leave_out_non_finite_units(tmp_path: Path) -> None:
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    info = {"id": "elu-s0", "group": "elu", "activation": "elu", "seed": 0}
    log = MemberLog(tmp_path / "elu" / "s0", info, resume_step=None)
    nan = float("nan")
    log.histograms(3, {"act/units/layer1": torch.tensor([0.5, nan, -1.0, float("inf")])})
    log.histograms(3, {"act/units/layer2": torch.tensor([nan, nan])})  # nothing to show
    log.close()
    events = EventAccumulator(str(tmp_path / "elu" / "s0"))
    events.Reload()
    assert events.Tags()["histograms"] == ["act/units/layer1"]
    (hist,) = events.Histograms("act/units/layer1")
    assert hist.step == 3 and hist.histogram_value.num == 2
    assert (hist.histogram_value.min, hist.histogram_value.max) == (-1.0, 0.5)
