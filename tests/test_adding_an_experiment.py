"""Adding an experiment as the README describes ("Adding an experiment"): a model module, its
``ModelEntry``, a model YAML and an experiment YAML; nothing inside elurepro changes.

The model here is a tiny CIFAR ResNet-style net defined in this very file, referenced from its
YAML as ``kind: tests.test_adding_an_experiment:TINY_RESNET``, and the two YAML files live in a
folder of the test's own that Hydra searches (``hydra.searchpath``), as a user's would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from elurepro import assemble
from elurepro.models.registry import ModelContext, ModelEntry
from elurepro.monitor import Probe
from tests.cifar_files import write_cifar10
from tests.hydra_utils import load_config

REPO = Path(__file__).resolve().parent.parent


class TinyResNet(nn.Module):
    """stem conv -> one residual block -> global average pool -> classes."""

    def __init__(
        self, activation: Callable[[], nn.Module], batchnorm: bool, channels: int, classes: int
    ) -> None:
        super().__init__()

        def norm() -> nn.Module:
            return nn.BatchNorm2d(channels) if batchnorm else nn.Identity()

        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), norm(), activation())
        self.probe0 = Probe()
        self.branch = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(),
            activation(),
            nn.Conv2d(channels, channels, 3, padding=1),
            norm(),
        )
        self.act = activation()
        self.probe1 = Probe()
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.probe0(self.stem(x))
        h = self.probe1(self.act(h + self.branch(h)))
        return self.head(h.mean(dim=(2, 3)))


def _tiny_resnet(
    activation: Callable[[], nn.Module], batchnorm: bool, ctx: ModelContext, channels: int
) -> nn.Module:
    return TinyResNet(activation, batchnorm, channels, ctx.num_classes)


TINY_RESNET = ModelEntry(member=_tiny_resnet, batchnorm=True)

MODEL_YAML = """\
kind: tests.test_adding_an_experiment:TINY_RESNET
task: classification
channels: 8
"""
EXPERIMENT_YAML = """\
# @package _global_
defaults:
  - override /data: cifar10
  - override /model: tiny_resnet

name: tiny_resnet_cifar
members:
  activations: [elu, relu]
  batchnorm: [false, true]
  seeds: [0, 1]
population:
  max_members: 1
train:
  unit: step
  length: 40
  batch_size: 10
  log_every: 5
  eval_every: 10
  act_every: 10
optim:
  lr: 0.01
  momentum: 0.9
  weight_decay: 5.0e-4
"""


def _configs(tmp_path: Path) -> Path:
    conf = tmp_path / "my_configs"
    (conf / "model").mkdir(parents=True)
    (conf / "experiment").mkdir()
    (conf / "model" / "tiny_resnet.yaml").write_text(MODEL_YAML)
    (conf / "experiment" / "tiny_resnet_cifar.yaml").write_text(EXPERIMENT_YAML)
    return conf


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_a_new_model_trains_at_smoke_budget_through_the_command(tmp_path: Path) -> None:
    conf = _configs(tmp_path)
    write_cifar10(tmp_path / "data")
    overrides = [
        f"hydra.searchpath=[file://{conf}]",
        "experiment=tiny_resnet_cifar",
        "budget=smoke",
        f"data.root={tmp_path / 'data'}",
        f"runs_dir={tmp_path / 'runs'}",
        f"cache_dir={tmp_path / 'cache'}",
        "progress=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "elurepro.train", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("summary.json")]
    groups = sorted(s["member"]["group"] for s in summaries)
    assert groups == sorted(["elu", "elu+bn", "relu", "relu+bn"] * 2)
    assert all(s["status"] == "finished" and s["steps"] == 12 for s in summaries)
    assert all("test/error" in s["final"] and "act/median/layer2" in s["final"] for s in summaries)

    # The analysis gives an experiment it never heard of a generic report: curves per unit and
    # every unit against ELU, labelled as having no counterpart in the paper.
    analysis = subprocess.run(
        [sys.executable, "-m", "elurepro.analyze", "tiny_resnet_cifar", str(tmp_path / "runs"),
         "--out", str(tmp_path / "report"), "--no-tensorboard"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert analysis.returncode == 0, analysis.stderr[-3000:]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "the paper has no experiment tiny_resnet_cifar" in report
    assert "relu vs elu" in report and (tmp_path / "report" / "learning_curves.png").is_file()

    # The registry's seeded member loop: seed r gives every unit and BN variant the same convs.
    cfg = load_config(f"hydra.searchpath=[file://{conf}]", "experiment=tiny_resnet_cifar")
    members = [m for m in assemble.build_members(cfg) if m.seed == 1]
    nets = assemble.build_population(cfg, members, torch.device("cpu"), num_classes=10).members
    convs = [{k: v for k, v in n.state_dict().items() if "bn" not in k} for n in nets]
    for other in convs[1:]:
        for key, value in convs[0].items():
            if key in other and value.dim() == 4:
                torch.testing.assert_close(other[key], value, rtol=0, atol=0)
