"""The TensorBoard dashboards, read back through a real TensorBoard server's HTTP API.

One runs folder as researchers have it, served whole (``tensorboard --logdir runs``), with more
than 40 runs: a real smoke sweep (small MNIST, a narrow net, 4 epochs of 20 steps) with
finished, diverged (lr 1000) and unfinished members, trained and analysed twice, beside three
sweeps of other experiments written directly in the trainer's formats through its writer
(``MemberLog``): an autoencoder learning-rate sweep with diverged members, a CIFAR sweep with and
without BN, and members still training, whose logs stay open while the server runs (the last
test finishes, diverges, stops and resumes them). Every check compares what the server says
with the run files (metrics.jsonl, member.json, summary.json, provenance.json) or, for what the
browser does with a URL, with the rule of TensorBoard's frontend that decides it (quoted where
it is used).
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
    RUNNING_DIR,
    MemberLog,
    dashboard_files,
    dashboard_path,
    running_sessions,
    sweep_tag,
    tb_tag,
    write_dashboard,
    write_running_session,
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
LIVE = "mnist_meanact/mnist-demo"  # the sweep of the members that are still training
RUNNING = "STATUS_RUNNING"


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


def _provenance(member: dict) -> dict:
    return {
        "device": "cpu",
        "torch": "2.x",
        "git_commit": "fake",
        "data": member["data"],
        "budget": member["budget"],
        "config": {"train": {"unit": "epoch"}},
    }


def _end(log: MemberLog, status: str, records: list[dict]) -> None:
    """What the trainer writes when a member ends: summary.json, then its dashboard file."""
    provenance = _provenance(log.member)
    final = {k: v for r in records for k, v in r.items() if "/" in k}
    diverged_at = records[-1]["step"] + 5 if status == "diverged" else None
    write_summary(
        log.folder,
        {"status": status, "diverged_at_step": diverged_at, "final": final, **provenance},
    )
    log.dashboard(provenance, status)


def _fake_member(
    runs: Path, info: dict, records: list[dict], status: str | None
) -> MemberLog | None:
    """A member folder as the trainer leaves it (through its own writers): metrics and events,
    provenance, and once it has ended its summary and dashboard file. A member with no status
    is still training: its log is returned open."""
    folder = run_folder(runs, info)
    member = {k: v for k, v in info.items() if not k.startswith("_")}
    provenance = _provenance(member)
    log = MemberLog(folder, member, None, epoch_axis=True)
    (folder / "provenance.json").write_text(json.dumps(provenance))
    log.dashboard(provenance, "unfinished")  # the trainer's call when a member starts
    for record in records:
        log.log(record)
    if status is None:
        log.tb.flush()
        return log
    _end(log, status, records)
    log.close()
    return None


def _live_record(step: int) -> dict:
    return {"step": step, "epoch": step // 10, "train/loss": 1.0 / step, "act/median": 0.1}


def _fake_sweeps(runs: Path) -> dict[str, MemberLog]:
    """An autoencoder learning-rate sweep (ReLU at lr 1 diverges), a CIFAR sweep with and
    without BN, and three members still training in a sweep of their own (their open logs, by
    run name)."""
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
    live = {}
    for unit, seed in (("elu", 0), ("relu", 0), ("elu", 1)):
        info = run_info("mnist_meanact", "mnist", unit, seed, budget="demo", official=False)
        log = _fake_member(runs, info, [_live_record(10)], None)
        live[log.folder.relative_to(runs).as_posix()] = log
    for experiment in ("mnist_autoencoder", "cifar100_11layer"):
        for sweep in partition(collect_members(runs / experiment)):
            a = Analysis(experiment, sweep.members, [])
            assert export(runs, sweep.members, {}, experiment, a).startswith("TensorBoard:")
    return live


class Server:
    def __init__(self, logdir: Path, log: Path, *flags: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--reload_interval", "1"]
            + list(flags),
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
    # What the trainer wrote, before any analysis: one dashboard file, of the member's status,
    # and no Running session left behind (the interrupted member's went when it stopped).
    trained = {
        name: [(p.name, _has_session(p)) for p in dashboard_files(m["folder"])]
        + [p.name for p in m["folder"].glob(RUNNING_DIR)]
        for name, m in real.items()
    }
    # A member trained before sessions existed, and one whose status went stale (its trainer was
    # killed between summary.json and the dashboard file), and a Running session whose trainer
    # was killed: the analysis must put all three right.
    missing, stale = prefix + "relu-lr0.01/s1", prefix + "elu-lr0.01/s1"
    for path in dashboard_files(real[missing]["folder"]):
        path.unlink()
    m = real[stale]
    write_dashboard(m["folder"], m["info"], m["provenance"], "unfinished")
    (killed,) = [n for n, m in real.items() if m["status"] == "unfinished"]
    write_running_session(real[killed]["folder"], real[killed]["info"])
    for _ in range(2):  # a second analysis must not add a second copy of anything
        result = analyze("mnist_meanact", sweep.root, tmp / "out")
        assert result.tensorboard and result.tensorboard.startswith("TensorBoard:"), result
    assert not running_sessions(real[killed]["folder"])
    live = _fake_sweeps(runs)
    members = _members(runs)
    server = Server(runs, tmp / "tensorboard.log")
    try:
        server.wait_for(
            "every run", lambda: server.get("/data/runs"), lambda r: set(members) <= set(r)
        )
        # Listed is not yet read: wait until every member's scalars are there too.
        logged = {
            n: {tb_tag(k) for r in m["records"] for k in r if "/" in k} for n, m in members.items()
        }
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
            "live": live,
        }
    finally:
        server.stop()
        for log in live.values():
            log.close()


def _session_groups(board) -> list[dict]:
    server = board["server"]
    request = {
        "experimentName": "",
        "allowedStatuses": ALL_STATUSES,
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 1000,
    }
    # A session per member that has ended, and a Running one per member still training.
    count = sum(m["status"] != "unfinished" for m in board["members"].values())
    count += len(board["live"])
    return server.wait_for(
        "every HParams session",
        lambda: server.get("/data/plugin/hparams/session_groups", request)["sessionGroups"],
        lambda groups: sum(len(g["sessions"]) for g in groups) >= count,
    )


def _ended(groups: list[dict]) -> dict[str, tuple[dict, dict]]:
    """Session name (a member's run) -> (its row, the session), for the members that ended."""
    return {
        s["name"]: (g, s)
        for g in groups
        for s in g["sessions"]
        if not s["name"].endswith("/" + RUNNING_DIR)
    }


def _hparams(group: dict) -> dict:
    """A row's values by column (``1.name`` -> ``name``)."""
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
        m = board["real"][name]
        status = m["status"]
        # The session is written once, final: TensorBoard keeps the first one it reads.
        assert files == [(dashboard_path(m["folder"], status).name, status != "unfinished")]
    # A TensorBoard that reads a run's files in sorted order and never goes back
    # (--load_fast=false) reads them in the order they were written: the start's text, the
    # curves, the result, the analysis's values.
    folder = board["real"][board["prefix"] + "elu-lr0.01/s0"]["folder"]
    names = [p.name.split(".")[0] for p in sorted(folder.glob("*tfevents*"))]
    assert names == ["events", "result", "result_hp"]
    start = dashboard_path(folder, "unfinished").name
    assert start < min(p.name for p in folder.glob("events.out.tfevents.*"))


def test_the_whole_runs_folder_is_served_with_more_than_40_runs(board) -> None:
    members = board["members"]
    runs = set(board["server"].get("/data/runs"))
    assert len(runs) > 40
    assert set(members) <= runs
    # Only runs whose names start with "_" are added: the analysis's, and a Running session's
    # in each member still training; no HParams runs.
    extra = {r.split("/_", 1)[1].split("/")[0] for r in runs - set(members)}
    assert extra == {"analysis", "mean_std", RUNNING_DIR[1:]}
    running = {r.removesuffix("/" + RUNNING_DIR) for r in runs if r.endswith("/" + RUNNING_DIR)}
    assert running == set(board["live"])
    for name, m in members.items():
        assert name.endswith(f"/{m['info']['group']}/s{m['info']['seed']}")
    # Run names filter by unit: -elu- selects exactly the ELU (alpha 1) members of the sweep.
    elu = {r for r in runs if r.startswith(board["prefix"] + "elu-")}
    assert elu == {n for n, m in board["real"].items() if m["info"]["group"].startswith("elu-")}


def test_scalars_are_the_member_logs_and_a_divergence_ends_them_with_nan(board) -> None:
    server = board["server"]
    tags = server.get("/data/plugin/scalars/tags")
    for name, m in board["real"].items():
        logged = {tb_tag(k) for r in m["records"] for k in r if "/" in k or k in ("lr", "epoch")}
        hp = {"hp/abs_median_activation", "hp/early_train_loss"}
        assert set(tags[name]) == logged | (hp if m["status"] == "finished" else set()), name
        # Per-layer series are in groups of their own (Time Series groups cards by the part
        # before the first "/"), not under act/ with Fig. 2's median.
        assert {t for t in tags[name] if t.startswith("act/")} == {"act/median"}, name
    for name, m in board["real"].items():
        if m["status"] != "diverged":
            continue
        # The last line of each metric is a NaN at the divergence (summary.json's iteration).
        for key in {k for r in m["records"] for k in r if "/" in k}:
            last = max(_last_by_step(m["records"], key).items())
            assert last[0] == m["diverged_at"] and math.isnan(last[1]), (name, key)
    name = board["prefix"] + "elu-lr0.01/s0"
    m = board["members"][name]
    for key in ("train/loss", "val/error", "act/median", "act/median/layer2", "lr", "epoch"):
        query = f"/data/plugin/scalars/scalars?run={name}&tag={tb_tag(key)}"
        served = {step: value for _, step, value in server.get(query)}
        assert served.keys() == _last_by_step(m["records"], key).keys(), key
        for step, value in _last_by_step(m["records"], key).items():
            assert served[step] == pytest.approx(value, rel=1e-6), (key, step)


def test_time_series_groups_keep_fig2_apart_from_the_per_layer_cards(board) -> None:
    """The Time Series tab groups its cards by the tag's part before the first "/": one card
    per scalar tag, and one per run and tag for histograms. Over the whole folder, the act
    group holds Fig. 2's median only; the per-layer cards are in groups of their own."""
    tags = board["server"].get("/experiment/defaultExperimentId/data/plugin/timeseries/tags")
    cards: dict[str, set] = {}
    for tag in {t for run_tags in tags["scalars"]["runTagInfo"].values() for t in run_tags}:
        cards.setdefault(tag.split("/")[0], set()).add(tag)
    for run_name, run_tags in tags["histograms"]["runTagInfo"].items():
        for tag in run_tags:
            cards.setdefault(tag.split("/")[0], set()).add((run_name, tag))
    assert cards["act"] == {"act/median"}
    keys = {k for m in board["real"].values() for r in m["records"] for k in r}
    layers = {k.rsplit("/", 1)[1] for k in keys if k.startswith("act/median/")}
    assert layers == {"layer1", "layer2"}
    assert cards["act_median"] == {f"act_median/{x}" for x in layers}
    histogram_runs = {run for run, _ in cards["act_units"]}
    assert len(cards["act_units"]) == len(layers) * len(histogram_runs) > 10


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
    # The members with a session: those that ended, and those still training (Running).
    ended = [
        m for n, m in board["members"].items() if m["status"] != "unfinished" or n in board["live"]
    ]
    infos = [m["info"] for m in ended]
    # Not elu_alpha0.5: it stopped before its end (no session).
    assert set(columns["unit"]["domainDiscrete"]) == {"elu", "relu", "lrelu_alpha0.3"}
    assert set(columns["lr"]["domainDiscrete"]) == {i["lr"] for i in infos}
    assert set(columns["batchnorm"]["domainDiscrete"]) == {True, False}
    assert set(columns["experiment"]["domainDiscrete"]) == {
        "mnist_meanact",
        "mnist_autoencoder",
        "cifar100_11layer",
    }
    sweeps = {m["sweep"] for m in ended}
    assert len(columns["sweep"]["domainDiscrete"]) == len(sweeps) == 4
    assert columns["status"]["domainDiscrete"] == ["finished", "diverged", "running"]
    # One name per row: a regex filter rather than a tick per value.
    assert columns["name"]["type"] == "DATA_TYPE_STRING" and "domainDiscrete" not in columns["name"]
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
    assert [h["displayName"] for h in shown] == ["name", "status", "diverged_at", "unit", "lr"]
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
    groups = [g for g in _session_groups(board) if _hparams(g)["status"] != "running"]
    sessions = _ended(groups)
    # One session per member that has ended, in its own run (those still training: see the
    # last test).
    assert set(sessions) == {n for n, m in members.items() if m["status"] != "unfinished"}
    expected_status = {"finished": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE"}
    for name, (group, session) in sessions.items():
        m = members[name]
        info = m["info"]
        row = _hparams(group)
        assert session["status"] == expected_status[m["status"]], name
        assert row["status"] == m["status"]
        assert row["unit"] == info["group"].split("-")[0].split("+")[0]
        tag = sweep_tag(m["folder"])
        assert row["sweep"] == f"{tag} {m['sweep'].split('/', 1)[1]}"
        # The row (Trial ID, a 10em column that cuts what does not fit): the 4-digit sweep
        # tag, then the name column, the configuration or the diverged member.
        if m["status"] == "finished":
            assert row["name"] == info["group"] and "diverged_at" not in row
        else:
            assert row["name"] == f"{info['group']}/s{info['seed']}"
            assert [s["name"] for s in group["sessions"]] == [name]
            assert row["diverged_at"] == m["diverged_at"]
        assert group["name"] == f"{tag} {row['name']}"
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
        files = [p.name for p in dashboard_files(m["folder"])]
        assert files == [dashboard_path(m["folder"], m["status"]).name], name
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
    assert sorted(tags[name]) == ["act_units/layer1", "act_units/layer2"]
    for layer in (1, 2):
        medians = _last_by_step(m["records"], f"act/median/layer{layer}")
        query = f"/data/plugin/histograms/histograms?run={name}&tag=act_units/layer{layer}"
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
    from elurepro.analysis.headline import figure_tags
    from elurepro.tblinks import members_url

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


def _rows(server: Server) -> dict[str, tuple[str, str, dict]]:
    """Session name -> (its row, its status, the row's values), as the server says now."""
    request = {"experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": []}
    request |= {"startIndex": 0, "sliceSize": 1000}
    groups = server.get("/data/plugin/hparams/session_groups", request)["sessionGroups"]
    return {s["name"]: (g["name"], s["status"], g) for g in groups for s in g["sessions"]}


def _steps(server: Server, run: str, tag: str = "train/loss") -> list[int]:
    return [step for _, step, _ in server.get(f"/data/plugin/scalars/scalars?run={run}&tag={tag}")]


def _follow_live_members(server: Server, live: dict[str, MemberLog]) -> None:
    """Three members train in the served folder (open logs, named by run: elu/s0, relu/s0,
    elu/s1): each shows as Running in the row it joins if it finishes, and its curves go on;
    elu/s1 stops (Running no more) and resumes (Running again). Then elu/s0 and elu/s1 finish
    and relu/s0 diverges: each row is the final one, and the Running ones go."""
    ((elu0, relu0, elu1),) = [
        [next(n for n in live if n.endswith(s)) for s in ("/elu/s0", "/relu/s0", "/elu/s1")]
    ]
    tag = sweep_tag(live[elu0].folder)
    running = {n: f"{n}/{RUNNING_DIR}" for n in live}
    rows = server.wait_for(
        "a Running session per member that trains",
        lambda: _rows(server),
        lambda rows: set(running.values()) <= set(rows),
    )
    for name, log in live.items():
        row, status, group = rows[running[name]]
        assert (row, status) == (f"{tag} {log.member['group']}", RUNNING), name
        assert _hparams(group)["name"] == log.member["group"]
        assert _hparams(group)["status"] == "running"
        assert name not in rows  # its own run gets its session once, when it ends
    for log in live.values():
        log.log(_live_record(20))
        log.tb.flush()
    for name in live:
        server.wait_for(
            f"{name}'s curve", lambda n=name: _steps(server, n), lambda s: s == [10, 20]
        )
    live[elu1].close()  # its trainer stopped (interrupted, with a checkpoint at step 20)
    server.wait_for(
        "the Running session of a member that stopped to go",
        lambda: (_rows(server), server.get("/data/runs")),
        lambda got: running[elu1] not in got[0] and running[elu1] not in got[1],
    )
    old = live[elu1]
    live[elu1] = MemberLog(old.folder, old.member, 20, epoch_axis=True)  # resumed
    live[elu1].dashboard(_provenance(old.member), "unfinished")
    live[elu1].log(_live_record(30))
    live[elu1].tb.flush()
    server.wait_for(
        "the resumed member's Running session",
        lambda: _rows(server),
        lambda rows: rows.get(running[elu1], ("", ""))[:2] == (f"{tag} elu", RUNNING),
    )
    server.wait_for("the resumed curve", lambda: _steps(server, elu1), lambda s: s == [10, 20, 30])
    records = [_live_record(10), _live_record(20)]
    _end(live[elu0], "finished", records)
    _end(live[elu1], "finished", [*records, _live_record(30)])
    # As the trainer does: the summary and dashboard file, then a NaN at the divergence.
    _end(live[relu0], "diverged", records)
    live[relu0].log({"step": 25, "train/loss": math.nan, "act/median": math.nan})
    live[relu0].tb.flush()
    expected = {
        elu0: (f"{tag} elu", "STATUS_SUCCESS"),
        elu1: (f"{tag} elu", "STATUS_SUCCESS"),
        relu0: (f"{tag} relu/s0", "STATUS_FAILURE"),
    }
    rows = server.wait_for(
        "the members' results, and no Running session",
        lambda: _rows(server),
        lambda rows: (
            {n: rows.get(n, ("", ""))[:2] for n in live} == expected
            and not set(running.values()) & set(rows)
        ),
    )
    assert _hparams(rows[elu0][2])["status"] == "finished"
    assert _names(rows[relu0][2]) == [relu0]  # a row of its own
    assert _hparams(rows[relu0][2])["status"] == "diverged"
    assert _hparams(rows[relu0][2])["diverged_at"] == 25
    assert not set(running.values()) & set(server.get("/data/runs"))
    last = [1 / 30, 1 / 20]  # elu/s1's last value (it resumed), elu/s0's
    assert _metrics(rows[elu0][2])["train/loss"] == pytest.approx(np.mean(last), rel=1e-6)
    server.wait_for("the NaN at the divergence", lambda: _steps(server, relu0), lambda s: 25 in s)


def test_members_that_train_show_as_running_then_as_their_result(board) -> None:
    """Last: it ends the members still training in the served folder."""
    _follow_live_members(board["server"], board["live"])


def test_tensorboards_python_loader_follows_them_too(tmp_path: Path) -> None:
    """``--load_fast=false`` (TensorBoard's Python loader) reads a run's event files in sorted
    order and never goes back to an earlier one: the members' files are named for it."""
    runs = tmp_path / "runs"
    live = {}
    for unit, seed in (("elu", 0), ("relu", 0), ("elu", 1)):
        info = run_info("mnist_meanact", "mnist", unit, seed, budget="demo", official=False)
        log = _fake_member(runs, info, [_live_record(10)], None)
        live[log.folder.relative_to(runs).as_posix()] = log
    server = Server(runs, tmp_path / "tensorboard.log", "--load_fast=false")
    try:
        _follow_live_members(server, live)
    finally:
        server.stop()
        for log in live.values():
            log.close()


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
    assert events.Tags()["histograms"] == ["act_units/layer1"]  # runlog.tb_tag
    (hist,) = events.Histograms("act_units/layer1")
    assert hist.step == 3 and hist.histogram_value.num == 2
    assert (hist.histogram_value.min, hist.histogram_value.max) == (-1.0, 0.5)


def test_a_running_session_goes_with_its_own_worker_only(tmp_path: Path) -> None:
    from elurepro.analysis.collect import collect_members
    from elurepro.analysis.tb_export import _write_sessions
    from elurepro.store.claims import LOCK, release_claim, try_claim

    info = run_info("mnist_meanact", "mnist", "elu", 0, budget="demo", official=False)
    log = _fake_member(tmp_path / "runs", info, [_live_record(10)], None)
    folder = log.folder
    # Another live process holds the member's claim (it took the member over): this log, once
    # closed, leaves that worker's member as it is (the fence), and so does the analysis.
    other = {"host": socket.gethostname(), "pid": os.getppid(), "token": "theirs"}
    (folder / LOCK).write_text(json.dumps(other))
    log.close()
    assert len(running_sessions(folder)) == 1
    _write_sessions(collect_members(tmp_path / "runs"))
    assert len(running_sessions(folder)) == 1
    # Nobody holds it (that worker was killed): the analysis removes the Running session.
    (folder / LOCK).unlink()
    _write_sessions(collect_members(tmp_path / "runs"))
    assert not running_sessions(folder) and not (folder / RUNNING_DIR).exists()
    # This process holds it: its log removes its own session when it stops.
    assert try_claim(folder / LOCK, "mine", stale_after_s=60).ok
    log = MemberLog(folder, log.member, 10)  # resumed
    log.dashboard(_provenance(log.member), "unfinished")
    assert len(running_sessions(folder)) == 1
    log.close()
    assert not (folder / RUNNING_DIR).exists()
    release_claim(folder / LOCK, "mine")
