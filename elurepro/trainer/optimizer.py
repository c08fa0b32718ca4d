"""One SGD over every member's parameters; per-member learning rates by scaling the losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from elurepro.models.mlp import StackedLinear


def sgd(population: nn.Module, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with weight decay on conv / linear weights only (U4), never on biases or BN."""
    decay, no_decay = [], []
    for module in population.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(
                module, (nn.Conv2d, nn.Linear, StackedLinear)
            )
            (decay if is_weight else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=1.0, momentum=momentum, foreach=True
    )


def lr_scaling_is_exact(lrs: Sequence[float], weight_decay: float) -> bool:
    """Whether members with these learning rates can share one SGD through scaled losses: exact
    with or without momentum (the update is linear in the gradient), not with weight decay (it
    would be scaled too). The config's validator refuses a population where it is not."""
    return not weight_decay or len(set(lrs)) <= 1


def member_lr_scales(scales: Sequence[float] | None, k: int, weight_decay: float) -> list[float]:
    """Each member's factor on the schedule's learning rate (all 1 unless given)."""
    scales = list(scales or [1.0] * k)
    if not lr_scaling_is_exact(scales, weight_decay):
        raise ValueError("per-member learning rates need weight_decay == 0 to stay exact")
    return scales
