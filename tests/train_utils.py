"""Train a population from a composed config the way the command does, for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from elurepro import assemble
from elurepro.store.sweep import Sweep
from tests.hydra_utils import load_config


def mnist_smoke(mnist_root: Path, runs: Path, *overrides: str):
    """mnist_meanact at smoke budget on the test MNIST files, into ``runs``."""
    return load_config(
        "experiment=mnist_meanact",
        "budget=smoke",
        f"data.root={mnist_root}",
        f"runs_dir={runs}",
        "progress=false",
        *overrides,
    )


def mnist_pair(mnist_root: Path, runs: Path, *overrides: str):
    """The same, for one ELU and one ReLU member (seed 0): the smallest pair of units."""
    return mnist_smoke(
        mnist_root, runs, "members.activations=[elu,relu]", "budget.max_seeds=1", *overrides
    )


def train(cfg, members=None, stop_at=None, device=None, dist=None) -> tuple[Sweep, str]:
    """Train ``members`` (default: all of the config's) as one population in the run store."""
    device = device or torch.device("cpu")
    members = members if members is not None else assemble.build_members(cfg)
    data = assemble.build_data(cfg, device, dist)
    sweep = assemble.make_sweep(cfg, data.info)
    run_dir = sweep.population_dir(members)
    trainer = assemble.build_trainer(cfg, members, data, device, run_dir, dist, sweep)
    return sweep, trainer.run(stop_at=stop_at)


def member_dir(sweep: Sweep, member_id: str) -> Path:
    """The folder of the member whose id is ``<group>-s<seed>``."""
    group, seed = member_id.rsplit("-s", 1)
    return sweep.root / group / f"s{seed}"


def records(sweep: Sweep, member_id: str) -> list[dict]:
    path = member_dir(sweep, member_id) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary(sweep: Sweep, member_id: str) -> dict:
    return json.loads((member_dir(sweep, member_id) / "summary.json").read_text())
