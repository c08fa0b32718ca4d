"""Device-resident batch streams for populations.

The training set lives on the training device as one tensor. Every distinct seed gets its own
shuffle per epoch and its own augmentation draws per step, both derived from (seed, epoch / step)
alone: members that share a seed see identical batches (the pairing the statistics need), and a
resumed run regenerates exactly the batches it would have seen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def derived_seed(*parts: object) -> int:
    """A 63-bit seed from any parts; independent streams for (seed, epoch, purpose) tuples."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def chunks(self, size: int):
        for i in range(0, len(self.y), size):
            yield self.x[i : i + size], self.y[i : i + size]


class TensorStream:
    """Training batches [K, B, ...] for K members with per-seed shuffles and augmentation."""

    def __init__(
        self,
        train: Split,
        batch_size: int,
        member_seeds: Sequence[int],
        augment: Augment | None = None,
    ) -> None:
        self.train = train
        self.batch_size = batch_size
        self.seeds = sorted(set(member_seeds))
        index = {s: i for i, s in enumerate(self.seeds)}
        self.device = train.x.device
        member_group = [index[s] for s in member_seeds]
        identity = member_group == list(range(len(self.seeds)))
        self._expand = None if identity else torch.tensor(member_group, device=self.device)
        self.augment = augment
        self.steps_per_epoch = math.ceil(len(train) / batch_size)
        self._epoch = -1
        self._perms: torch.Tensor | None = None
        self._aug_gen = torch.Generator(device=self.device)

    def _permutations(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            perms = [
                torch.randperm(
                    len(self.train),
                    generator=torch.Generator().manual_seed(derived_seed(seed, epoch, "order")),
                )
                for seed in self.seeds
            ]
            self._perms = torch.stack(perms).to(self.device)
            self._epoch = epoch
        return self._perms

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.steps_per_epoch)
        idx = self._permutations(epoch)[:, i * self.batch_size : (i + 1) * self.batch_size]
        x, y = self.train.x[idx], self.train.y[idx]  # [G, B, ...]
        if self.augment is not None:
            x = torch.stack(
                [
                    self.augment(xg, self._aug_gen.manual_seed(derived_seed(seed, step, "augment")))
                    for seed, xg in zip(self.seeds, x)
                ]
            )
        if self._expand is not None:
            x, y = x[self._expand], y[self._expand]
        return x, y
