import json

import pytest
import torch

from elurepro import assemble
from tests.cifar_files import write_cifar10
from tests.hydra_utils import load_config


def test_paper_schedules_in_steps():
    cfg = load_config("experiment=cifar100_11layer")
    plan = assemble.plan_steps(cfg, steps_per_epoch=500, lrs=[0.01])
    assert plan.loop.total_steps == 165000
    lr = plan.optim.lr
    assert [lr(0), lr(34999), lr(35000), lr(85000), lr(135000), lr(164999)] == [
        0.01,
        0.01,
        0.005,
        0.0005,
        0.00005,
        0.00005,
    ]
    assert (plan.loop.log_every, plan.loop.eval_every) == (500, 1000)
    assert plan.optim.weight_decay == 5e-4 and plan.optim.momentum == 0.9


def test_18layer_phases_and_their_scaling():
    paper = assemble.plan_steps(load_config("experiment=cifar_18layer"), 500, [0.01])
    assert paper.loop.total_steps == 205000
    assert [p.start for p in paper.optim.dropout_phases] == [115000, 165000]
    assert paper.optim.dropout_phases[1].rates[:6] == (0.0, 0.15, 0.3, 0.45, 0.6, 0.75)
    assert all(p.all_layers for p in paper.optim.dropout_phases)
    assert paper.optim.lr(34999) == 0.01 and paper.optim.lr(35000) == 0.001
    short = assemble.plan_steps(
        load_config("experiment=cifar_18layer", "budget=short"), 500, [0.01]
    )
    assert short.loop.total_steps == 20500
    assert [p.start for p in short.optim.dropout_phases] == [11500, 16500]
    assert short.optim.lr.boundaries == [3500]


@pytest.mark.slow  # about a minute or more: whitens CIFAR, trains the 11-layer net
def test_cifar_smoke_run_pairs_initial_weights(tmp_path):
    write_cifar10(tmp_path / "data")
    cfg = load_config(
        "experiment=cifar100_11layer",
        "data=cifar10",
        "budget=smoke",
        f"data.root={tmp_path / 'data'}",
        f"runs_dir={tmp_path / 'runs'}",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=false",
        "budget.max_steps=3",
        "members.activations=[elu,relu]",
        "budget.max_seeds=1",
    )
    device = torch.device("cpu")
    with pytest.warns(UserWarning, match="md5"):
        data = assemble.build_data(cfg, device)
    assert data.info["official"] is False and data.train.x.shape[1:] == (3, 32, 32)
    chunks = assemble.plan_chunks(cfg)
    assert [c[0].id for c in chunks] == ["elu-s0", "elu+bn-s0", "relu-s0", "relu+bn-s0"]
    nets = [assemble.build_population(cfg, c, device, num_classes=10).members[0] for c in chunks]
    first = nets[0].state_dict()
    # Same seed: the same conv weights for every unit and BN variant, but for ReLU without BN,
    # whose are the same draw scaled by the square root of its own gain (U3).
    relu_scale = (cfg.model.unit_gains["relu"] / cfg.model.init_gain) ** 0.5
    for chunk, net in zip(chunks[1:], nets[1:], strict=True):
        scale = relu_scale if chunk[0].id == "relu-s0" else 1.0
        for key, value in net.state_dict().items():
            if "conv" in key:
                expected = first[key] * scale if key.endswith("weight") else first[key]
                torch.testing.assert_close(value, expected, rtol=1e-6, atol=0)
    sweep = assemble.make_sweep(cfg, data.info)
    run_dir = sweep.population_dir(chunks[1])
    trainer = assemble.build_trainer(cfg, chunks[1], data, device, run_dir, sweep=sweep)
    assert trainer.run() == "finished"
    summary = json.loads((sweep.member_dir(chunks[1][0]) / "summary.json").read_text())
    assert summary["data"]["official"] is False and "LOSSY" not in summary["data"]["description"]
    assert summary["member"]["batchnorm"] is True and "test/error" in summary["final"]


@pytest.mark.slow  # about a minute or more: whitens CIFAR, trains the 11-layer net
def test_smoke_command_on_the_shared_lossy_cifar10(shared_data, tmp_path):
    """The issue's check: `python -m elurepro.train experiment=cifar100_11layer data=cifar10
    budget=smoke` trains on the shared copy from an empty runs folder (one member here, to keep
    the default suite short; the whitening cache is shared with other runs on this machine)."""
    import os
    import subprocess
    import sys

    if not (shared_data / "cifar-10-batches-py").is_dir():
        pytest.skip("no cifar-10-batches-py in ELUREPRO_DATA")
    cmd = [
        sys.executable,
        "-m",
        "elurepro.train",
        "experiment=cifar100_11layer",
        "data=cifar10",
        "budget=smoke",
        f"runs_dir={tmp_path / 'runs'}",
        "progress=false",
        "members.activations=[elu]",
        "members.batchnorm=[false]",
        "budget.max_seeds=1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "LOSSY" in proc.stderr + proc.stdout
    (summary_path,) = (tmp_path / "runs").rglob("summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "finished" and summary["steps"] == 12
    assert summary["data"]["official"] is False
    assert 0 <= summary["final"]["test/error"] <= 100
