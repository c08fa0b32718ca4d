"""Schedules by iteration: piecewise-constant learning rate (§5.3) and dropout phases (§5.4)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from elurepro.errors import ConfigError


class PiecewiseConstant:
    """``values[i]`` from ``boundaries[i-1]`` (inclusive) up to ``boundaries[i]``, in steps."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]) -> None:
        if len(values) != len(boundaries) + 1:
            raise ConfigError(
                f"a piecewise schedule needs one more value than boundaries, got "
                f"{len(values)} values and {len(boundaries)} boundaries"
            )
        if any(b <= a for a, b in zip(boundaries, boundaries[1:])) or any(
            b <= 0 for b in boundaries
        ):
            raise ConfigError(
                f"schedule boundaries must be positive and increasing: {list(boundaries)}"
            )
        if any(v <= 0 for v in values):
            raise ConfigError(f"learning rates must be > 0, got {list(values)}")
        self.boundaries = list(boundaries)
        self.values = list(values)

    def __call__(self, step: int) -> float:
        return self.values[bisect.bisect_right(self.boundaries, step)]


@dataclass(frozen=True)
class DropoutPhase:
    """From step ``start`` on: dropout ``rates`` per stack, on every layer if ``all_layers``."""

    start: int
    rates: tuple[float, ...]
    all_layers: bool


def phase_at(phases: Sequence[DropoutPhase], step: int) -> DropoutPhase | None:
    current = None
    for phase in sorted(phases, key=lambda p: p.start):
        if phase.start <= step:
            current = phase
    return current
