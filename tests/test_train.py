import json
import os
import subprocess
import sys

import pytest
import torch

from elurepro import assemble
from tests.hydra_utils import load_config
from tests.train_utils import member_dir, mnist_smoke, records, summary, train

_cfg = mnist_smoke


def _train(cfg, members=None, stop_at=None):
    return train(cfg, members, stop_at)


def _records(sweep, member_id: str) -> list[dict]:
    return records(sweep, member_id)


def _strip_time(records):
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_smoke_run_from_an_empty_folder(mnist_root, tmp_path):
    """The command a user types, in a fresh folder: event files and metrics appear there."""
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "ELUREPRO_DATA": str(mnist_root)}
    env.pop("ELUREPRO_RUNS")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "elurepro.train",
            "experiment=mnist_meanact",
            "budget=smoke",
            "progress=false",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    members = list((work / "runs").rglob("member.json"))
    assert len(members) == 6  # 3 activations x 2 smoke seeds
    for m in members:
        assert list(m.parent.glob("events.out.tfevents.*"))
        records = [json.loads(x) for x in (m.parent / "metrics.jsonl").read_text().splitlines()]
        assert records[0]["step"] == 0 and "act/median" in records[0]  # epoch 0 included
        summary = json.loads((m.parent / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["torch"] == torch.__version__
    # Same command again: everything is finished, nothing is retrained.
    again = subprocess.run(
        proc.args, cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "skipped" in again.stdout


def test_interrupt_and_rerun_gives_identical_metrics(mnist_root, tmp_path):
    whole, status = _train(_cfg(mnist_root, tmp_path / "a"))
    assert status == "finished"
    cut, status = _train(
        _cfg(mnist_root, tmp_path / "b"), stop_at=7
    )  # mid-interval: accumulators must survive
    assert status == "interrupted" and not (member_dir(cut, "elu-s0") / "summary.json").exists()
    _, status = _train(_cfg(mnist_root, tmp_path / "b"))
    assert status == "finished"
    for member in ("elu-s0", "relu-s1", "lrelu-s0"):
        assert _strip_time(_records(cut, member)) == _strip_time(_records(whole, member))


def test_member_in_population_equals_member_alone(mnist_root, tmp_path):
    cfg = _cfg(mnist_root, tmp_path)
    members = assemble.build_members(cfg)
    alone, _ = _train(cfg, [m for m in members if m.id == "relu-s1"])
    together, _ = _train(cfg, members)
    a, b = _records(alone, "relu-s1"), _records(together, "relu-s1")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("train/loss", "val/loss", "act/median"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6)


def test_seed_gives_same_start_to_every_activation(mnist_root, tmp_path):
    cfg = _cfg(mnist_root, tmp_path)
    pop = assemble.build_population(cfg, assemble.build_members(cfg), torch.device("cpu"))
    w = pop.net[0].weight  # [K, 784, 128]; members ordered elu s0, s1, lrelu s0, s1, relu s0, s1
    torch.testing.assert_close(w[0], w[2])
    torch.testing.assert_close(w[0], w[4])
    assert not torch.equal(w[0], w[1])
    # He init: std sqrt(2 / fan_in)
    assert w[0].std().item() == pytest.approx((2 / 784) ** 0.5, rel=0.02)


def test_divergence_stops_one_member_and_not_the_others(mnist_root, tmp_path):
    cfg = _cfg(
        mnist_root,
        tmp_path,
        "members.activations=[relu]",
        "members.lrs=[0.01,1000.0]",
        "members.seeds=[0]",
    )
    run_dir, status = _train(cfg)
    assert status == "finished"
    bad = summary(run_dir, "relu-lr1000-s0")
    good = summary(run_dir, "relu-lr0.01-s0")
    assert bad["status"] == "diverged" and isinstance(bad["diverged_at_step"], int)
    assert good["status"] == "finished" and good["steps"] == 12


def test_per_member_learning_rates_are_exact(mnist_root, tmp_path):
    """A member at lr 0.001 inside a mixed population equals a lone run at lr 0.001."""
    mixed = _cfg(
        mnist_root,
        tmp_path / "m",
        "members.activations=[elu]",
        "members.lrs=[0.01,0.001]",
        "members.seeds=[0]",
    )
    alone = _cfg(
        mnist_root,
        tmp_path / "s",
        "members.activations=[elu]",
        "optim.lr=0.001",
        "members.seeds=[0]",
    )
    d1, _ = _train(mixed)
    d2, _ = _train(alone)
    a, b = _records(d1, "elu-lr0.001-s0"), _records(d2, "elu-s0")
    assert a[-1]["val/loss"] == pytest.approx(b[-1]["val/loss"], rel=1e-5)


@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lr=0", "optim.lr=0: expected a number > 0"),
        ("optim.lr=-0.1", "optim.lr=-0.1: expected a number > 0"),
        ("members.activations=[elu,swish9]", "unknown activation 'swish9'; known activations"),
        ("data.root=/nonexistent/folder", "MNIST not found"),
    ],
)
def test_bad_input_is_one_clear_line(override, message, mnist_root, tmp_path):
    env = {**os.environ, "ELUREPRO_DATA": str(mnist_root)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "elurepro.train",
            "experiment=mnist_meanact",
            "budget=smoke",
            "progress=false",
            "data.download=false",
            override,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # ~30 s idle; the default suite trains real MNIST in test_learns.py
def test_short_run_on_real_mnist_keeps_elu_median_closest_to_zero(shared_data, tmp_path):
    cfg = load_config(
        "experiment=mnist_meanact",
        f"data.root={shared_data}",
        f"runs_dir={tmp_path}",
        "progress=false",
        "budget=smoke",
        "budget.max_steps=1600",
        "budget.train_subset=null",
        "budget.eval_subset=2000",
        "budget.max_seeds=1",
    )
    run_dir, _ = _train(cfg)
    median = {}
    for act in ("elu", "relu", "lrelu"):
        values = [r["act/median"] for r in _records(run_dir, f"{act}-s0") if "act/median" in r]
        median[act] = sum(abs(v) for v in values) / len(values)
    assert median["elu"] < median["lrelu"] and median["elu"] < median["relu"], median


@pytest.mark.parametrize("native", [False, True])
def test_bf16_warns_only_where_it_would_be_emulated(native, mnist_root, tmp_path, monkeypatch):
    import warnings

    from elurepro.trainer import execution

    monkeypatch.setattr(execution, "has_native_bf16", lambda device: native)
    cfg = _cfg(mnist_root, tmp_path, "execution.bf16=true")
    members = assemble.build_members(cfg)
    device = torch.device("cpu")
    data = assemble.build_data(cfg, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assemble.build_trainer(cfg, members, data, device, tmp_path / "pop")
    emulated = [w for w in caught if "no native bf16" in str(w.message)]
    assert len(emulated) == (0 if native else 1)


def test_a_unit_with_parameters_is_learned_per_member(mnist_root, tmp_path):
    """PReLU's slope belongs to one member: in a population each member trains its own, and a
    member equals the same member trained alone."""
    cfg = _cfg(mnist_root, tmp_path, "members.activations=[prelu]")
    members = assemble.build_members(cfg)
    pop = assemble.build_population(cfg, members, torch.device("cpu"))
    slopes = [p for name, p in pop.named_parameters() if ".acts." in name]
    assert len(slopes) == 8 * 2  # 8 hidden layers x 2 seeds
    alone, _ = _train(cfg, [m for m in members if m.seed == 1])
    together, _ = _train(_cfg(mnist_root, tmp_path / "t", "members.activations=[prelu]"))
    a, b = _records(alone, "prelu-s1"), _records(together, "prelu-s1")
    assert a[-1]["val/loss"] == pytest.approx(b[-1]["val/loss"], rel=1e-5)
