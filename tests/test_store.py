"""The run store: identity from what is computed, claims, and sweeps shared by several workers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from elurepro import assemble
from elurepro.analysis.report import analyze_all
from elurepro.checkpoint import save_checkpoint, write_json
from elurepro.store.claims import LOCK, ClaimLost, Claims, read_claim, try_claim
from elurepro.store.identity import ADDED_LATER, config_key
from elurepro.store.work import StoreConfig, SweepWorker
from elurepro.train import run
from elurepro.trainer.recorder import FencedLog
from tests.hydra_utils import experiments, load_config
from tests.mnist_files import write_mnist
from tests.train_utils import member_dir, mnist_smoke, records, train

SMOKE = ["experiment=mnist_meanact", "budget=smoke", "progress=false", "data.download=false"]
# The subprocess tests train a narrow net: what they check does not depend on its width.
NARROW = "model.sizes=[784,32,32,10]"
FAST_CLAIMS = ["store.poll_s=0.2", "store.heartbeat_s=0.5", "store.stale_after_s=60"]


def _members(runs: Path) -> dict[str, dict]:
    """member id -> {records (without wall times), summaries, event files}, for every member."""
    out = {}
    for info in sorted(runs.rglob("member.json")):
        folder = info.parent
        member = json.loads(info.read_text())
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        out[member["id"]] = {
            "records": [{k: v for k, v in r.items() if k != "wall_time"} for r in records],
            "summary": (folder / "summary.json").exists(),
            "events": len(list(folder.glob("events.out.tfevents.*"))),
            "folder": folder,
        }
    return out


def _command(runs: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "elurepro.train", *SMOKE, f"data.root={data}", f"runs_dir={runs}",
            NARROW, *FAST_CLAIMS, *extra]  # fmt: skip


# Several workers share 2 cores here: one thread each, or OpenMP's spinning threads fight.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


# ------------------------------------------------------------------ identity


def test_member_folder_ignores_the_rest_of_the_sweep():
    """Which other seeds or units were asked for, grouping and workers: same member folder."""

    def folder(*overrides: str) -> Path:
        cfg = load_config("experiment=mnist_meanact", *overrides)
        sweep = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": "a" * 16})
        (m,) = [m for m in assemble.build_members(cfg) if m.id == "relu-s3"]
        return sweep.member_dir(m)

    base = folder()
    assert base.parts[-2:] == ("relu", "s3")
    assert folder("members.seeds=[3]") == base
    assert folder("members.activations=[relu,gelu]") == base
    assert folder("population.max_members=1", "worker=5") == base
    assert folder("store.stale_after_s=1") == base
    assert folder("optim.momentum=0.9") != base  # the mathematics changed


def test_data_and_activation_parameters_are_part_of_the_identity():
    cfg = load_config("experiment=mnist_meanact")
    a = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": "a" * 16})
    b = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": "b" * 16})
    assert a.root != b.root and a.root.parent == b.root.parent
    spelled = load_config("experiment=mnist_meanact", "members.activations=[{name: lrelu}]")
    explicit = load_config("experiment=mnist_meanact", "members.activations=[lrelu]")
    other = load_config("experiment=mnist_meanact", "members.activations=[{name:lrelu,alpha:0.3}]")
    ids = [assemble.build_members(c)[0].id for c in (spelled, explicit, other)]
    assert ids == ["lrelu-s0", "lrelu-s0", "lrelu_alpha0.3-s0"]


# The member keys of every experiment's paper configuration (data fingerprint fixed), recorded
# when the run store was introduced. A change here moves every run already made: only a change
# to the mathematics may do that. A key added later belongs in ADDED_LATER at its old value.
GOLDEN = {
    # Moved twice, on purpose (issue 21): every CNN's initialisation became N(0, 1/fan_in), then
    # ReLU and LReLU got a gain of their own (U3). The keys before are kept below.
    "cifar100_11layer": "439cc7bdcd86a188",
    "cifar_18layer": "d935bd2f204523d2",
    "imagenet_15layer_spp": "545e8794ffe5a130",
    "mnist_autoencoder": "eadb44e131282599",
    "mnist_meanact": "6acfec7e2abd2c71",
}


# The keys before the CNNs' initialisation became N(0, 1/fan_in) (issue 21, U3): the same
# mathematics (He, init_gain 2) must still find them.
HE = ("model.init_gain=2.0", "model.unit_gains=null")
OLD_INIT_GOLDEN = {
    "cifar100_11layer": (HE, "62835603a972832c"),
    "cifar_18layer": (HE, "2dbeb1a996d48783"),
    "imagenet_15layer_spp": (HE, "72eec31e8e784417"),
}
# The keys under N(0, 1/fan_in) for every unit, before ReLU and LReLU got a gain of their own.
SAME_GAIN = ("model.unit_gains=null",)
OLD_INIT_GOLDEN |= {
    f"{name} (one gain)": (SAME_GAIN, key)
    for name, key in [
        ("cifar100_11layer", "a446245fc271c7bf"),
        ("cifar_18layer", "ff34c7034db9d8eb"),
        ("imagenet_15layer_spp", "28e95771fb4f99aa"),
    ]
}


@pytest.mark.parametrize("case", sorted(OLD_INIT_GOLDEN))
def test_runs_made_under_the_old_init_keep_their_folders(case):
    overrides, key = OLD_INIT_GOLDEN[case]
    experiment = case.split()[0]
    cfg = load_config(f"experiment={experiment}", *overrides)
    sweep = assemble.make_sweep(cfg, {"name": cfg.data.name, "fingerprint": "0" * 16})
    assert sweep.member_key(assemble.build_members(cfg)[0]) == key


@pytest.mark.parametrize("experiment", experiments())
def test_paper_identities_are_unchanged(experiment):
    cfg = load_config(f"experiment={experiment}")
    sweep = assemble.make_sweep(cfg, {"name": cfg.data.name, "fingerprint": "0" * 16})
    first = assemble.build_members(cfg)[0]
    assert sweep.member_key(first) == GOLDEN[experiment]


def test_a_key_added_later_leaves_identities_unchanged_at_its_old_value():
    tree = OmegaConf.to_container(load_config("experiment=mnist_meanact"), resolve=True)
    for (section, key), old in ADDED_LATER.items():
        without = json.loads(json.dumps(tree))
        without[section].pop(key, None)
        with_old = json.loads(json.dumps(tree))
        with_old[section][key] = old
        assert config_key(without) == config_key(with_old) == config_key(tree)
        with_new = json.loads(json.dumps(tree))
        with_new[section][key] = not old if isinstance(old, bool) else "changed"
        assert config_key(with_new) != config_key(tree)


# ------------------------------------------------------------------ data switch


def test_runs_on_other_data_are_never_reused(tmp_path, capsys):
    """The same command on two sets of MNIST-format files: two sweeps, each trained on its own
    data, each summary holding its own fingerprint; the second is not 'finished earlier'."""
    a = write_mnist(tmp_path / "a", n_train=2000, n_test=300, seed=0)
    b = write_mnist(tmp_path / "b", n_train=2000, n_test=300, seed=1)
    runs = tmp_path / "runs"
    args = [*SMOKE, f"runs_dir={runs}", "members.activations=[elu]", "budget.max_seeds=1",
            "data.val_size=500"]  # fmt: skip
    with pytest.warns(UserWarning, match="not the official release"):
        assert run(load_config(*args, f"data.root={a}")) == 0
    with pytest.warns(UserWarning, match="not the official release"):
        assert run(load_config(*args, f"data.root={b}")) == 0
    out = capsys.readouterr().out
    assert "finished earlier" not in out
    summaries = [json.loads(p.read_text()) for p in sorted(runs.rglob("summary.json"))]
    assert len(summaries) == 2
    prints = {s["data"]["fingerprint"] for s in summaries}
    assert len(prints) == 2 and all(s["data"]["official"] is False for s in summaries)
    for path in runs.rglob("summary.json"):  # every folder's fingerprint is its summary's
        fingerprint = json.loads(path.read_text())["data"]["fingerprint"]
        assert path.parents[2].name.startswith(f"d{fingerprint[:8]}-")
    # The first data again: found, not retrained.
    with pytest.warns(UserWarning):
        assert run(load_config(*args, f"data.root={a}")) == 0
    assert "1 of 1 members finished earlier" in capsys.readouterr().out


def test_layout_before_the_run_store_is_named_not_reused(tmp_path, mnist_root):
    old = tmp_path / "runs/mnist_meanact/mnist-smoke/pop6-elu-s0-920a1680"
    (old / "members/elu-s0").mkdir(parents=True)
    (old / "members/elu-s0/summary.json").write_text("{}")
    proc = _finish(_command(tmp_path / "runs", mnist_root), tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "layout before" in line and str(old.parent) in line
    assert "scripts/migrate_runs.py" in line
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))


# ------------------------------------------------------------------ claims


def test_a_claim_is_exclusive_until_its_holder_dies(tmp_path):
    path = tmp_path / "m" / LOCK
    assert try_claim(path, "first", stale_after_s=60).ok
    taken = try_claim(path, "second", stale_after_s=60)
    assert not taken.ok and taken.holder.pid == os.getpid()
    # A holder on this host whose process is gone: taken over at once.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = json.loads(path.read_text())
    path.write_text(json.dumps({**claim, "pid": dead.pid}))
    over = try_claim(path, "second", stale_after_s=60)
    assert over.ok and over.holder.pid == dead.pid
    assert read_claim(path).token == "second"
    # A holder elsewhere that stopped refreshing: taken over after the timeout only.
    path.write_text(json.dumps({"host": "other-node", "pid": 1, "token": "third"}))
    assert not try_claim(path, "fourth", stale_after_s=60).ok
    old = time.time() - 120
    os.utime(path, (old, old))
    assert try_claim(path, "fourth", stale_after_s=60).ok


def _age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def test_the_fence_stops_every_write_once_the_claim_is_taken_over(tmp_path):
    """The fence compares the claim's token at write time: after a takeover, no metrics line,
    TensorBoard event, JSON file or checkpoint is written, and what was there stays as it was."""
    folder = tmp_path / "elu" / "s0"
    lock = folder / LOCK
    assert try_claim(lock, "mine", stale_after_s=60).ok
    claims = Claims([lock], "mine", heartbeat_s=30, stale_after_s=60)
    log = FencedLog(folder, {"id": "elu-s0", "seed": 0}, None, claims.check)
    log.log({"step": 0, "val/loss": 1.0})
    ckpt = tmp_path / "_populations" / "p" / "checkpoint.pt"
    save_checkpoint(ckpt, {"step": 0}, step=0, fence=claims.check)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != lock}

    _age(lock, 120)  # the holder was paused for two minutes: another worker takes over
    taken = try_claim(lock, "theirs", stale_after_s=60)
    assert taken.ok and taken.holder.token == "mine"
    with pytest.raises(ClaimLost, match=f"took over {folder}"):
        log.log({"step": 1, "val/loss": 0.5})
    with pytest.raises(ClaimLost):
        log.histograms(1, {"act/units/layer1": torch.ones(3)})
    with pytest.raises(ClaimLost):
        log.write_json("summary.json", {"status": "finished"})
    with pytest.raises(ClaimLost):
        save_checkpoint(ckpt, {"step": 1}, step=1, fence=claims.check)
    with pytest.raises(ClaimLost):  # fenced down to the rename: nothing replaced, nothing left
        write_json(folder / "provenance.json", {}, fence=claims.check)
    log.close()
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p != lock}
    assert after == before
    assert read_claim(lock).token == "theirs"


def test_a_paused_holder_whose_claim_nobody_took_renews_it(tmp_path):
    """A worker that wakes up with an old claim still its own goes on writing, and its claim is
    fresh again before it does (so a taker that looks now leaves it alone)."""
    lock = tmp_path / "m" / LOCK
    assert try_claim(lock, "mine", stale_after_s=60).ok
    claims = Claims([lock], "mine", heartbeat_s=30, stale_after_s=60)
    _age(lock, 50)
    claims.check()
    assert read_claim(lock).age_s < 5
    assert not try_claim(lock, "theirs", stale_after_s=60).ok


def test_the_wait_line_counts_every_member_held_elsewhere(tmp_path):
    """A whole population of 6 held by a worker on another node: the waiting worker says 6."""
    cfg = load_config(*SMOKE, f"runs_dir={tmp_path}")  # 3 units x 2 seeds, one population
    sweep = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": "a" * 16})
    (population,) = assemble.plan_chunks(cfg)
    assert len(population) == 6
    for member in population:
        lock = sweep.member_dir(member) / LOCK
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"host": "node7", "pid": 4242, "token": "theirs"}))

    class Said(Exception):
        pass

    def say(line: str) -> None:
        if line.startswith("waiting"):
            raise Said(line)

    worker = SweepWorker(sweep, [population], StoreConfig(stale_after_s=60), say)
    with pytest.raises(Said) as said:
        next(worker.jobs())
    assert str(said.value).startswith("waiting: the 6 member(s) left are being trained by node7:")


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_two_identical_commands_train_each_member_once(tmp_path, mnist_root):
    cmd = _command(tmp_path / "runs", mnist_root, "budget.max_steps=200")
    procs = [_start(cmd, tmp_path) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    members = _members(tmp_path / "runs")
    assert len(members) == 6
    for m in members.values():
        steps = [r["step"] for r in m["records"][:-1]]  # the last: the final evaluation
        assert steps == sorted(set(steps)) == list(range(0, 201, 20))
        assert m["summary"] and m["events"] == 1
    # One of them trained, the other said in one line that it waited for it.
    said = [out for out, _ in outs if "being trained by" in out]
    assert len(said) == 1 and said[0].count("training ") == 0


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_three_workers_share_a_sweep_and_match_one_worker(tmp_path, mnist_root):
    extra = ("budget.max_steps=60", "population.max_members=2")
    alone = _finish(_command(tmp_path / "one", mnist_root, *extra), tmp_path)
    assert alone.returncode == 0
    cmd = _command(tmp_path / "three", mnist_root, *extra)
    procs = [_start([*cmd, f"worker={i}"], tmp_path) for i in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    one, three = _members(tmp_path / "one"), _members(tmp_path / "three")
    assert sorted(three) == sorted(one) and len(one) == 6
    for member_id, m in three.items():
        assert m["summary"] and m["events"] == 1
        assert m["records"] == one[member_id]["records"], member_id
    trained = sum(out.count("training ") for out, _ in outs)
    assert trained == 3  # three populations of two, each trained by exactly one worker


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_a_worker_killed_mid_member_is_finished_by_another(tmp_path, mnist_root):
    extra = ("budget.max_steps=200", "population.max_members=3")
    reference = _finish(_command(tmp_path / "one", mnist_root, *extra), tmp_path)
    assert reference.returncode == 0
    runs = tmp_path / "two"
    cmd = _command(runs, mnist_root, *extra)
    procs = {p.pid: p for p in (_start([*cmd, f"worker={i}"], tmp_path) for i in range(2))}
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:  # a member past its first checkpoint
        for lock in runs.rglob(LOCK):
            metrics = lock.parent / "metrics.jsonl"
            holder = read_claim(lock)
            if holder and holder.pid in procs and metrics.exists():
                if '"step": 40,' in metrics.read_text():
                    victim = procs.pop(holder.pid)
                    break
        time.sleep(0.05)
    assert victim is not None, "no worker reached a checkpoint"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (survivor,) = procs.values()
    out, err = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, err
    assert "taking over" in out
    one, two = _members(tmp_path / "one"), _members(runs)
    assert sorted(two) == sorted(one)
    for member_id, m in two.items():
        assert m["summary"]
        assert m["records"] == one[member_id]["records"], member_id


# ------------------------------------------------------------------ same folder, other numbers
# What README "What differs between runs" promises for a member trained alone against the same
# member trained in a population, at this length: rounding only, at most this relative difference.
GROUPING_RTOL = 1e-5


def test_grouping_and_threads_are_recorded_and_change_only_rounding(tmp_path, mnist_root):
    """elu-s0 alone and elu-s0 beside relu-s0: one folder, two ways of computing it. Each run
    says how it was computed (population, threads, processes), and the numbers agree to within
    GROUPING_RTOL (bit for bit on one thread)."""
    runs = {}
    for name, units in (("alone", "[elu]"), ("pair", "[elu,relu]")):
        cfg = mnist_smoke(mnist_root, tmp_path / name, NARROW, f"members.activations={units}",
                          "budget.max_seeds=1", "budget.max_steps=60")  # fmt: skip
        with pytest.warns(UserWarning, match="not the official release"):
            runs[name], status = train(cfg)
        assert status == "finished"
    alone, pair = (member_dir(runs[n], "elu-s0") for n in ("alone", "pair"))
    assert alone.relative_to(tmp_path / "alone") == pair.relative_to(tmp_path / "pair")
    for folder, population in ((alone, ["elu-s0"]), (pair, ["elu-s0", "relu-s0"])):
        for name in ("provenance.json", "summary.json"):
            record = json.loads((folder / name).read_text())
            assert record["population"] == population
            assert (record["threads"], record["processes"]) == (torch.get_num_threads(), 1)
    a, b = records(runs["alone"], "elu-s0"), records(runs["pair"], "elu-s0")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 15, 30, 45, 60, 60]
    for ra, rb in zip(a, b):
        assert set(ra) == set(rb)
        for key, value in ra.items():
            if key != "wall_time":
                assert rb[key] == pytest.approx(value, rel=GROUPING_RTOL, abs=0), (ra["step"], key)


# ------------------------------------------------------------------ workers.sh
WORKERS_SH = Path(__file__).resolve().parents[1] / "scripts" / "workers.sh"


@pytest.mark.parametrize(
    ("command", "status"),
    [("echo $0", 0), ("exit 3", 3), ('test "$0" = worker=0 || exit 5', 5)],
    ids=["both-succeed", "both-fail", "second-fails"],
)
def test_workers_exit_with_the_status_of_a_failed_worker(command, status):
    """workers.sh N: the exit status of the first failed worker (0 if none), not of the sed
    that prefixes its lines; every worker's lines come through, prefixed."""
    done = subprocess.run(
        ["bash", str(WORKERS_SH), "2", "sh", "-c", command], capture_output=True, text=True
    )
    assert done.returncode == status
    if status == 0:
        assert sorted(done.stdout.splitlines()) == ["[w0] worker=0", "[w1] worker=1"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_analyses_nothing_after_its_workers_failed(tmp_path):
    """The issue's command: both workers refuse train.batch_size=abc, and make stops there."""
    venv = tmp_path / "venv"  # a stamp newer than pyproject.toml: make installs nothing
    venv.mkdir()
    (venv / ".installed").touch()
    done = subprocess.run(
        [
            "make",
            "-C",
            str(WORKERS_SH.parents[1]),
            "mnist-fig2",
            "BUDGET=smoke",
            "WORKERS=2",
            "ARGS=train.batch_size=abc",
            f"VENV={venv}",
            f"PY={sys.executable}",
            "ANALYZE=echo ANALYSED",
        ],  # fmt: skip
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "ANALYSED" not in done.stdout
    assert "[w0] error:" in done.stdout and "[w1] error:" in done.stdout


# ------------------------------------------------------------------ a paused worker

# Put on a worker's path as sitecustomize.py: ELUREPRO_PAUSE={"what": ..., "step": ...} makes the
# worker stop itself with SIGSTOP once, at that moment (the command itself is unchanged).
PAUSE_HOOK = r"""
import json, os, signal

_spec = json.loads(os.environ.get("ELUREPRO_PAUSE") or "null")
if _spec:
    import elurepro.checkpoint as ck
    import elurepro.trainer.recorder as rec

    _paused = []

    def _wrap(owner, name, due):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if not _paused and due(*args):
                _paused.append(True)
                os.kill(os.getpid(), signal.SIGSTOP)
            return original(*args, **kwargs)

        setattr(owner, name, wrapper)

    if _spec["what"] == "log":  # before the metrics line of a log point
        _wrap(rec.FencedLog, "log", lambda log, record: record["step"] == _spec["step"])
    elif _spec["what"] == "final":  # before the final evaluation's line and the summaries
        _wrap(rec.Recorder, "finish", lambda *args: True)
    elif _spec["what"] == "checkpoint":  # half-way through writing a checkpoint
        _wrap(ck, "_write_checkpoint", lambda f, state, info: info["step"] == _spec["step"])
"""
PAUSED_RUN = ("budget.max_steps=60", "members.activations=[elu,relu]", "budget.max_seeds=1",
              "store.stale_after_s=3", "store.heartbeat_s=0.25", "store.poll_s=0.1")  # fmt: skip


def _stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``proc`` has stopped itself (SIGSTOP); fails if it ends instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        assert proc.poll() is None, f"exited with {proc.returncode} instead of pausing"
        time.sleep(0.02)
    pytest.fail("the worker did not reach its pause")


def _files(runs: Path) -> dict[str, bytes]:
    return {str(p.relative_to(runs)): p.read_bytes() for p in runs.rglob("*") if p.is_file()}


def _tensorboard(folder: Path) -> dict[str, list]:
    """Scalars and histograms as a fresh TensorBoard reads the member's folder (every event file,
    in order, with the purges a resume writes)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    out = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in tags["scalars"]}
    for t in tags["histograms"]:
        out[t] = [
            (e.step, e.histogram_value.num, e.histogram_value.sum) for e in events.Histograms(t)
        ]
    return out


def _outcome(runs: Path) -> dict:
    """What one-worker and paused-worker runs must agree on: every member's metrics, summary,
    TensorBoard data, and the population's final checkpoint."""
    out = {}
    for member_id, m in _members(runs).items():
        summary = json.loads((m["folder"] / "summary.json").read_text())
        kept = ("status", "final", "steps", "diverged_at_step", "member", "population")
        out[member_id] = (
            m["records"],
            {k: summary.get(k) for k in kept},
            _tensorboard(m["folder"]),
        )
    (ckpt,) = runs.rglob("checkpoint.pt")
    state = torch.load(ckpt, weights_only=False)
    out["checkpoint"] = (state["step"], {k: v.tolist() for k, v in state["model"].items()})
    return out


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, mnist_root) -> dict:
    runs = tmp_path_factory.mktemp("one") / "runs"
    done = _finish(_command(runs, mnist_root, *PAUSED_RUN), runs.parent)
    assert done.returncode == 0, done.stderr
    return _outcome(runs)


@pytest.mark.slow  # about 10 s per case: two workers start, one waits out a claim timeout
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states in /proc")
@pytest.mark.parametrize("resumed", ["after", "during"])
@pytest.mark.parametrize(
    "moment",
    [{"what": "log", "step": 30}, {"what": "final"}, {"what": "checkpoint", "step": 30}],
    ids=["log-point", "final", "checkpoint"],
)
def test_a_paused_worker_writes_nothing_after_its_member_is_taken_over(
    moment, resumed, one_worker, tmp_path, mnist_root
):
    """Worker A stops itself (SIGSTOP) at the moment; B takes the members over after the claim
    timeout and trains them; A is continued after B finished, or while B (paused in turn) is
    mid-member. A writes nothing once continued, and every member ends as with one worker."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_HOOK)
    runs = tmp_path / "runs"
    cmd = _command(runs, mnist_root, *PAUSED_RUN)

    def start(name: str, pause: dict | None) -> subprocess.Popen:
        env = {**ENV, "PYTHONPATH": os.pathsep.join([str(hook), *sys.path])}
        env["ELUREPRO_PAUSE"] = json.dumps(pause)
        out, err = (open(tmp_path / f"{name}.{x}", "w") for x in ("out", "err"))  # noqa: SIM115
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=err)

    a = start("a", moment)
    _stopped(a)
    if resumed == "after":
        b = start("b", None)
        assert b.wait(timeout=300) == 0, (tmp_path / "b.err").read_text()
    else:  # B pauses too, at a point after its takeover, so that A runs while B is mid-member
        b = start(
            "b", {"what": "final"} if moment["what"] == "final" else {"what": "log", "step": 45}
        )
        _stopped(b)
    before = _files(runs)
    a.send_signal(signal.SIGCONT)
    assert a.wait(timeout=300) == 2
    assert _files(runs) == before  # not a line, event, summary or checkpoint from A
    (line,) = [x for x in (tmp_path / "a.err").read_text().splitlines() if x.startswith("error")]
    assert "took over" in line and "wrote nothing there since" in line
    if resumed == "during":
        b.send_signal(signal.SIGCONT)
        assert b.wait(timeout=300) == 0, (tmp_path / "b.err").read_text()
    assert "taking over" in (tmp_path / "b.out").read_text()
    assert _outcome(runs) == one_worker


# ------------------------------------------------------------------ per-member learning rate


def test_each_member_logs_its_own_learning_rate(tmp_path, mnist_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = [*SMOKE, f"data.root={mnist_root}", f"runs_dir={tmp_path}"]
    cfg = load_config(*args, "members.activations=[elu]", "members.lrs=[0.01,0.001]",
                      "budget.max_seeds=1")  # fmt: skip
    assert run(cfg) == 0
    for info in tmp_path.rglob("member.json"):
        member = json.loads(info.read_text())
        logged = [json.loads(x).get("lr") for x in (info.parent / "metrics.jsonl").open()]
        assert {lr for lr in logged if lr is not None} == {member["lr"]}
        events = EventAccumulator(str(info.parent))
        events.Reload()
        assert {round(e.value, 8) for e in events.Scalars("lr")} == {member["lr"]}
        summary = json.loads((info.parent / "summary.json").read_text())
        assert summary["member"]["lr"] == member["lr"]
    assert {json.loads(p.read_text())["lr"] for p in tmp_path.rglob("member.json")} == {
        0.01,
        0.001,
    }
    # The analysis finds the configuration it expects, elu, at each learning rate.
    (result,) = analyze_all("mnist_meanact", tmp_path, tmp_path / "report", tensorboard=False)
    assert not [line for line in result.attention if line.startswith("missing")]
