"""The run store: identity from what is computed, claims, and sweeps shared by several workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from elurepro import assemble
from elurepro.store.claims import LOCK, read_claim, try_claim
from elurepro.store.identity import ADDED_LATER, config_key
from elurepro.train import run
from tests.hydra_utils import experiments, load_config
from tests.mnist_files import write_mnist

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
    "cifar100_11layer": "62835603a972832c",
    "cifar_18layer": "2dbeb1a996d48783",
    "imagenet_15layer_spp": "72eec31e8e784417",
    "mnist_autoencoder": "eadb44e131282599",
    "mnist_meanact": "6acfec7e2abd2c71",
}


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
    assert "layout before" in line and str(old) in line and "mv " in line
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
