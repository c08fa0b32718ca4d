"""The TensorBoard dashboards, read back through a real TensorBoard server's HTTP API.

One smoke sweep (small MNIST, a narrow net, 4 epochs of 20 steps) with finished, diverged
(lr 1000) and unfinished members is trained and analysed twice; a TensorBoard on 127.0.0.1 then
serves it, and every check compares what the server says with the run files (metrics.jsonl,
member.json, summary.json, provenance.json).
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

import numpy as np
import pytest

from elurepro import train as train_module
from elurepro.analysis.report import analyze
from elurepro.runlog import DASHBOARD, write_dashboard
from elurepro.train import run
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


# ---------------------------------------------------------------- the sweep and the server


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _members(root: Path) -> dict[str, dict]:
    """run name (folder relative to the sweep) -> what the member's files say."""
    out = {}
    for info in sorted(root.rglob("member.json")):
        folder = info.parent
        summary = folder / "summary.json"
        out[folder.relative_to(root).as_posix()] = {
            "folder": folder,
            "info": json.loads(info.read_text()),
            "records": _read_jsonl(folder / "metrics.jsonl"),
            "status": json.loads(summary.read_text())["status"]
            if summary.exists()
            else "unfinished",
            "provenance": json.loads((folder / "provenance.json").read_text()),
        }
    return out


def _last_by_step(records: list[dict], tag: str) -> dict[int, float]:
    """step -> value of `tag`; a step logged twice keeps its later line (as the analysis does)."""
    return {r["step"]: float(r[tag]) for r in records if tag in r}


class Server:
    def __init__(self, logdir: Path, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
            + ["--host", "127.0.0.1", "--port", str(self.port)],
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
    root = sweep.root
    members = _members(root)
    assert sorted({m["status"] for m in members.values()}) == ["diverged", "finished", "unfinished"]
    # What the trainer wrote, before any analysis: one dashboard file, of the member's status.
    trained = {
        name: sorted(p.name for p in m["folder"].glob(f"{DASHBOARD}.*"))
        for name, m in members.items()
    }
    # A member trained before sessions existed, and one whose status went stale (its trainer was
    # killed between summary.json and the dashboard file): the analysis must put both right.
    missing, stale = "relu-lr0.01/s1", "elu-lr0.01/s1"
    for path in members[missing]["folder"].glob(f"{DASHBOARD}.*"):
        path.unlink()
    m = members[stale]
    write_dashboard(m["folder"], m["info"], m["provenance"], "unfinished")
    for _ in range(2):  # a second analysis must not add a second copy of anything
        result = analyze("mnist_meanact", root, tmp / "out")
        assert result.tensorboard and result.tensorboard.startswith("TensorBoard:"), result
    server = Server(root, tmp / "tensorboard.log")
    try:
        expected = set(members) | {"_analysis"}
        server.wait_for("every run", lambda: server.get("/data/runs"), lambda r: expected <= set(r))
        # Listed is not yet read: wait until every member's scalars are there too.
        logged = {n: {k for r in m["records"] for k in r if "/" in k} for n, m in members.items()}
        server.wait_for(
            "every member's scalars",
            lambda: server.get("/data/plugin/scalars/tags"),
            lambda tags: all(logged[n] <= set(tags.get(n, ())) for n in members),
        )
        yield {
            "server": server,
            "root": root,
            "members": members,
            "trained": trained,
            "fixed": (missing, stale),
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
    count = len(board["members"])
    return server.wait_for(
        "every HParams session",
        lambda: server.get("/data/plugin/hparams/session_groups", request)["sessionGroups"],
        lambda groups: sum(len(g["sessions"]) for g in groups) >= count,
    )


# ---------------------------------------------------------------- checks


def test_the_trainer_writes_one_dashboard_file_of_the_members_status(board) -> None:
    for name, files in board["trained"].items():
        assert files == [f"{DASHBOARD}.{board['members'][name]['status']}"], name


def test_runs_are_the_members_plus_the_analysis_runs(board) -> None:
    members = board["members"]
    runs = set(board["server"].get("/data/runs"))
    extra = runs - set(members)
    assert set(members) <= runs
    # Only runs whose names start with "_" are added; none per member, no HParams runs.
    finished_groups = {m["info"]["group"] for m in members.values() if m["status"] == "finished"}
    assert extra == {"_analysis"} | {f"_mean_std/{g}" for g in finished_groups}
    for name, m in members.items():
        assert name == f"{m['info']['group']}/s{m['info']['seed']}"
    # Run names filter by unit: ^elu- selects exactly the ELU (alpha 1) members.
    elu = {r for r in runs if re.match(r"^elu-", r)}
    assert elu == {n for n, m in members.items() if m["info"]["group"].startswith("elu-")}


def test_scalars_are_the_member_logs(board) -> None:
    server = board["server"]
    tags = server.get("/data/plugin/scalars/tags")
    for name, m in board["members"].items():
        logged = {k for r in m["records"] for k in r if "/" in k or k == "lr"}
        assert set(tags[name]) == logged, name  # no final/* or other one-point charts
    m = board["members"]["elu-lr0.01/s0"]
    for tag in ("train/loss", "val/error", "act/median", "act/median/layer2", "lr"):
        query = f"/data/plugin/scalars/scalars?run=elu-lr0.01/s0&tag={tag}"
        served = {step: value for _, step, value in server.get(query)}
        assert served.keys() == _last_by_step(m["records"], tag).keys(), tag
        for step, value in _last_by_step(m["records"], tag).items():
            assert served[step] == pytest.approx(value, rel=1e-6), (tag, step)
    for run_name, run_tags in tags.items():
        if run_name.startswith("_mean_std/"):
            assert all(t.startswith("mean_std/") for t in run_tags), run_name


def test_hparams_columns_are_typed_and_the_metrics_are_the_headline(board) -> None:
    experiment = board["server"].get("/data/plugin/hparams/experiment", {"experimentName": ""})
    columns = {h["name"]: h for h in experiment["hparamInfos"]}
    infos = [m["info"] for m in board["members"].values()]
    assert columns["unit"]["type"] == "DATA_TYPE_STRING"
    assert set(columns["unit"]["domainDiscrete"]) == {
        "elu",
        "relu",
        "lrelu_alpha0.3",
        "elu_alpha0.5",
    }
    assert columns["batchnorm"]["type"] == "DATA_TYPE_BOOL"
    assert columns["seed"]["type"] == "DATA_TYPE_FLOAT64"
    seeds = columns["seed"]["domainDiscrete"]
    assert all(s == int(s) for s in seeds) and set(seeds) == {i["seed"] for i in infos}
    for name in ("lr", "activation_alpha"):
        assert columns[name]["type"] == "DATA_TYPE_FLOAT64", name
    assert set(columns["lr"]["domainDiscrete"]) == {i["lr"] for i in infos}
    alphas = {i["activation_params"]["alpha"] for i in infos if "alpha" in i["activation_params"]}
    assert set(columns["activation_alpha"]["domainDiscrete"]) == alphas
    assert columns["status"]["type"] == "DATA_TYPE_STRING"
    assert columns["status"]["domainDiscrete"] == ["finished", "diverged", "unfinished"]
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    # What the paper compares first, then the other training and evaluation metrics.
    assert metrics[:4] == ["train/loss", "val/error", "test/error", "act/median"]
    assert set(metrics[4:]) == {"train/error", "val/loss", "test/loss"}
    assert not [m for m in metrics if m == "lr" or "/layer" in m]


def test_hparams_sessions_are_the_member_runs_grouped_per_configuration(board) -> None:
    members = board["members"]
    groups = _session_groups(board)
    sessions = {s["name"]: (g, s) for g in groups for s in g["sessions"]}
    assert sorted(sessions) == sorted(members)  # one session per member, in its own run
    expected_status = {"finished": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE"}
    for name, m in members.items():
        group, session = sessions[name]
        assert group["hparams"]["status"] == m["status"], name
        assert session.get("status", "STATUS_UNKNOWN") == expected_status.get(
            m["status"], "STATUS_UNKNOWN"
        ), name
        assert group["name"].startswith(m["info"]["group"]), name
        assert ("[" in group["name"]) == (m["status"] != "finished"), group["name"]
        assert group["hparams"]["unit"] == name.split("-")[0]
    # A group is one configuration: every seed, and the metrics' mean over them.
    group, _ = sessions["elu-lr0.01/s0"]
    assert sorted(s["name"] for s in group["sessions"]) == ["elu-lr0.01/s0", "elu-lr0.01/s1"]
    finals = [
        _last_by_step(members[n]["records"], "train/loss")[80]
        for n in sessions
        if n.startswith("elu-lr0.01/")
    ]
    value = {v["name"]["tag"]: v["value"] for v in group["metricValues"]}["train/loss"]
    assert value == pytest.approx(np.mean(finals), rel=1e-6)
    # Diverged members are in the table, with their status.
    diverged = [g for g in groups if g["hparams"]["status"] == "diverged"]
    assert {s["name"] for g in diverged for s in g["sessions"]} == {
        n for n, m in members.items() if m["status"] == "diverged"
    }


def test_the_analysis_writes_missing_and_stale_sessions_once(board) -> None:
    for name, m in board["members"].items():
        files = sorted(p.name for p in m["folder"].glob(f"{DASHBOARD}.*"))
        assert files == [f"{DASHBOARD}.{m['status']}"], name
    missing, stale = board["fixed"]
    sessions = {s["name"]: g for g in _session_groups(board) for s in g["sessions"]}
    assert sessions[missing]["hparams"]["status"] == "finished"
    assert sessions[stale]["hparams"]["status"] == "finished"
    root = board["root"]
    for folder in [root / "_analysis", *(root / "_mean_std").iterdir()]:
        assert len(list(folder.glob("*tfevents*"))) == 1, folder


def test_histograms_hold_the_per_unit_mean_activations(board) -> None:
    server = board["server"]
    tags = server.get("/data/plugin/histograms/tags")
    m = board["members"]["relu-lr0.01/s0"]
    assert sorted(tags["relu-lr0.01/s0"]) == ["act/units/layer1", "act/units/layer2"]
    for layer in (1, 2):
        medians = _last_by_step(m["records"], f"act/median/layer{layer}")
        query = f"/data/plugin/histograms/histograms?run=relu-lr0.01/s0&tag=act/units/layer{layer}"
        served = {step: buckets for _, step, buckets in server.get(query)}
        assert served.keys() == medians.keys()  # every monitor point, and only those
        for step, buckets in served.items():
            assert sum(count for _, _, count in buckets) == pytest.approx(32)  # 32 units
            low, high = buckets[0][0], buckets[-1][1]
            assert low - 1e-6 <= medians[step] <= high + 1e-6


def test_custom_scalars_show_mean_and_std_over_seeds_per_epoch(board) -> None:
    server = board["server"]
    layout = server.get("/data/plugin/custom_scalars/layout")
    (category,) = layout["category"]
    assert "x = epoch" in category["title"]
    charts = {c["title"]: c["margin"]["series"] for c in category["chart"]}
    assert {"train/loss", "val/error", "act/median"} <= set(charts)
    members = board["members"]
    for metric in ("train/loss", "act/median"):
        (series,) = charts[metric]
        query = (
            "/data/plugin/custom_scalars/scalars?run=_mean_std/relu-lr0.01&tag="
            + urllib.request.quote(f"^{re.escape(series['value'])}(/lower|/upper)?$")
        )
        payload = server.get(query)["tag_to_events"]
        value, lower, upper = (
            {step: v for _, step, v in payload[series[k]]} for k in ("value", "lower", "upper")
        )
        runs = [m["records"] for n, m in members.items() if n.startswith("relu-lr0.01/")]
        by_epoch = [{int(r["epoch"]): float(r[metric]) for r in rs if metric in r} for rs in runs]
        epochs = sorted(set.intersection(*(set(e) for e in by_epoch)))
        assert sorted(value) == epochs and epochs[-1] == 4  # steps are epochs 0..4
        for epoch in epochs:
            ys = [e[epoch] for e in by_epoch]
            mean, std = np.mean(ys), np.std(ys, ddof=1)
            assert value[epoch] == pytest.approx(mean, rel=1e-5, abs=1e-7)
            assert upper[epoch] - lower[epoch] == pytest.approx(2 * std, rel=1e-4, abs=1e-6)


def test_each_member_shows_its_configuration_and_provenance_as_text(board) -> None:
    server = board["server"]
    name = "lrelu_alpha0.3-lr1000/s1"
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
        "diverged",
        COMMAND.replace("(", "").split()[0],
    ):
        assert expected in provenance, expected
    assert prov["command"] == COMMAND and "official data" in provenance
    assert re.search(r"official data</td>\s*<td>false", provenance)  # the toy MNIST
    (config,) = server.get(f"/data/plugin/text/text?run={name}&tag=config")
    assert f"batch_size: {prov['config']['train']['batch_size']}" in config["text"]
    assert "sizes:" in config["text"] and math.isfinite(config["step"])


# ---------------------------------------------------------------- pieces, without a server


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

    from elurepro.runlog import MemberLog

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
