"""The members of an experiment: every (activation, BN, learning rate, seed) combination.

Members are ordered so that equal activations are adjacent (stacked populations apply one
activation per contiguous slice). ``group`` names a configuration without its seed; runs with the
same seed across groups are the pairs of the Wilcoxon tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from elurepro.activations import build_activation
from elurepro.errors import ConfigError


@dataclass(frozen=True)
class Member:
    activation: str
    activation_params: dict[str, Any] = field(default_factory=dict)
    batchnorm: bool = False
    lr: float = 0.01
    seed: int = 0
    tag_lr: bool = False  # put the learning rate in the name (when several are compared)

    @property
    def group(self) -> str:
        name = self.activation + ("+bn" if self.batchnorm else "")
        return f"{name}@lr={self.lr:g}" if self.tag_lr else name

    @property
    def id(self) -> str:
        return f"{self.group}-s{self.seed}".replace("@lr=", "-lr")

    def record(self, **extra: Any) -> dict[str, Any]:
        d = asdict(self)
        d.pop("tag_lr")
        return {"id": self.id, "group": self.group, **d, **extra}


def parse_activation(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``"elu"`` or ``{"name": "lrelu", "alpha": 0.1}`` -> (name, params), validated."""
    if isinstance(spec, str):
        name, params = spec, {}
    else:
        params = dict(spec)
        if "name" not in params:
            raise ConfigError(f"activation entry {spec} needs a 'name'")
        name = params.pop("name")
    build_activation(name, **params)  # raises a ConfigError listing the known names
    return name.lower(), params


def expand_members(
    activations: Sequence[str | dict[str, Any]],
    batchnorm: Sequence[bool],
    lrs: Sequence[float],
    seeds: Sequence[int],
) -> list[Member]:
    if not activations or not seeds or not lrs or not batchnorm:
        raise ConfigError(
            "members need at least one activation, BN setting, learning rate and seed"
        )
    for lr in lrs:
        if not lr > 0:
            raise ConfigError(f"learning rates (optim.lr, members.lrs) must be > 0, got {lr}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be distinct, got {list(seeds)}")
    parsed = [parse_activation(a) for a in activations]
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise ConfigError(f"each activation may appear once, got {names}")
    tag_lr = len(lrs) > 1
    return [
        Member(name, params, bn, float(lr), int(seed), tag_lr)
        for (name, params), bn, lr, seed in itertools.product(parsed, batchnorm, lrs, seeds)
    ]


def chunk(members: list[Member], size: int | None) -> list[list[Member]]:
    if size is None or size <= 0:
        return [members]
    return [members[i : i + size] for i in range(0, len(members), size)]
