"""The members of an experiment: every (activation, BN, learning rate, seed) combination.

Members are ordered so that equal activations are adjacent (stacked populations apply one
activation per contiguous slice). ``group`` names a configuration without its seed; runs with the
same seed across groups are the pairs of the Wilcoxon tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from elurepro.activations import ActivationSpec, parse_activation
from elurepro.errors import ConfigError


@dataclass(frozen=True)
class MemberSpec:
    """What one trained network is: its unit, BN, learning rate and seed."""

    activation: ActivationSpec
    batchnorm: bool = False
    lr: float = 0.01
    seed: int = 0
    lr_in_name: bool = False  # the sweep compares learning rates, or this one is not optim.lr

    @property
    def group(self) -> str:
        """``<unit>[+bn][-lr<lr>]``: the configuration, and the first part of the run's name."""
        name = self.activation.label + ("+bn" if self.batchnorm else "")
        return f"{name}-lr{self.lr:g}" if self.lr_in_name else name

    @property
    def id(self) -> str:
        return f"{self.group}-s{self.seed}"

    @property
    def folder(self) -> str:
        """The member's folder inside its sweep folder: ``<group>/s<seed>``."""
        return f"{self.group}/s{self.seed}"

    def identity(self) -> dict[str, Any]:
        """The member's own part of its identity (see ``store/identity.py``)."""
        return {
            "activation": self.activation.name,
            "activation_params": self.activation.kwargs,
            "batchnorm": self.batchnorm,
            "lr": self.lr,
            "seed": self.seed,
        }

    def record(self, **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "group": self.group, **self.identity(), **extra}


def expand_members(
    activations: Sequence[Any],
    batchnorm: Sequence[bool],
    lrs: Sequence[float] | None,
    seeds: Sequence[int],
    base_lr: float,
) -> list[MemberSpec]:
    """Every combination, activations outermost. ``lrs`` None means ``[base_lr]``."""
    compared = lrs is not None
    lrs = list(lrs) if compared else [base_lr]
    if not activations or not seeds or not lrs or not batchnorm:
        raise ConfigError(
            "members need at least one activation, BN setting, learning rate and seed"
        )
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"learning rates (optim.lr, members.lrs) must be > 0, got {lr}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"members.seeds must be integers >= 0, got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {list(seeds)}")
    parsed = [parse_activation(a) for a in activations]
    if len(set(parsed)) != len(parsed):
        raise ConfigError(f"each activation may appear once, got {[p.label for p in parsed]}")
    return [
        MemberSpec(act, bool(bn), float(lr), int(seed), compared or float(lr) != base_lr)
        for act, bn, lr, seed in itertools.product(parsed, batchnorm, lrs, seeds)
    ]


def chunk(members: list[MemberSpec], size: int | None) -> list[list[MemberSpec]]:
    if size is None or size <= 0:
        return [members]
    return [members[i : i + size] for i in range(0, len(members), size)]
