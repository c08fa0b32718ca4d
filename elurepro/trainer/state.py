"""What the loop carries from step to step, and what a checkpoint restores.

Training values are summed on the device over a log interval and read back only at log points,
so that the step itself never waits for the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from elurepro import distributed
from elurepro.distributed import DistContext


@dataclass
class LoopState:
    step: int
    wall_time: float
    first_bad: torch.Tensor  # [K] first step with a non-finite loss, -1 while all were finite
    alive: list[bool]
    sums: dict[str, torch.Tensor]  # [K] per training metric, summed over the interval's steps
    count: int = 0  # steps in the interval
    last_loss: float | None = None  # mean training loss of the live members, for the bar
    # Per member, the last value logged of each metric: its summary's "final". None for a
    # checkpoint from before they were carried (the recorder then reads them back).
    final: list[dict[str, float]] | None = None

    @classmethod
    def fresh(cls, k: int, keys: Sequence[str], device: torch.device) -> LoopState:
        return cls(
            step=0,
            wall_time=0.0,
            first_bad=torch.full((k,), -1, dtype=torch.long, device=device),
            alive=[True] * k,
            sums=_zeros(k, keys, device),
            final=[{} for _ in range(k)],
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint (no class reference, so refactors keep it loadable)."""
        return {
            "step": self.step,
            "wall_time": self.wall_time,
            "first_bad": self.first_bad,
            "alive": list(self.alive),
            "sums": dict(self.sums),
            "count": self.count,
            "final": self.final,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        keys = ("step", "wall_time", "first_bad", "alive", "sums", "count")
        return cls(*(d[key] for key in keys), final=d.get("final"))

    def add_step(
        self,
        step: int,
        losses: torch.Tensor,
        sums: dict[str, torch.Tensor],
        batch_size: int,
    ) -> None:
        """Add training step ``step``: its per-member losses [K] and the task's sums over each
        member's batch."""
        self.sums["loss"] += losses.double()
        self.count += 1
        for key, value in sums.items():
            self.sums[key] += value / batch_size  # per-image mean of this batch
        bad = ~torch.isfinite(losses)
        self.first_bad = torch.where(bad & (self.first_bad < 0), step, self.first_bad)

    def interval_means(self) -> dict[str, list[float]]:
        """The training means over the interval since the last call, per member; starts the next
        interval."""
        n = max(self.count, 1)
        means = {f"train/{key}": (value / n).tolist() for key, value in self.sums.items()}
        self.sums = {key: torch.zeros_like(value) for key, value in self.sums.items()}
        self.count = 0
        live = [v for v, a in zip(means["train/loss"], self.alive) if a and math.isfinite(v)]
        self.last_loss = sum(live) / len(live) if live else math.nan
        return means

    def newly_diverged(self) -> list[tuple[int, int]]:
        """Live members whose loss has become non-finite, as (member, iteration); they are no
        longer alive afterwards."""
        found = []
        for k, bad in enumerate(self.first_bad.tolist()):
            if self.alive[k] and bad >= 0:
                self.alive[k] = False
                found.append((k, bad + 1))
        return found

    def merge_ranks(self, dist: DistContext | None) -> None:
        """Make the interval sums and first bad steps equal on all ranks (DDP).

        Each rank's sums become their mean over ranks, which keeps their total: the next log
        point's mean over ranks is unchanged, and a checkpoint holds the global values.
        """
        if dist is None:
            return
        keys = list(self.sums)
        stacked = distributed.sum_over_ranks(dist, torch.stack([self.sums[key] for key in keys]))
        for key, value in zip(keys, stacked / dist.world_size):
            self.sums[key] = value
        never = torch.iinfo(torch.long).max
        bad = self.first_bad
        first = distributed.min_over_ranks(dist, torch.where(bad < 0, never, bad))
        self.first_bad = torch.where(first == never, -1, first)


def _zeros(k: int, keys: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.zeros(k, dtype=torch.float64, device=device) for key in keys}
