"""Batch streams for populations: device-resident tensors, or a DataLoader for large data.

``TensorStream``: the training set lives on the training device as one tensor. Every distinct
seed gets its own shuffle per epoch and its own augmentation draws per step, both derived from
(seed, epoch / step) alone: members that share a seed see identical batches (the pairing the
statistics need), and a resumed run regenerates exactly the batches it would have seen.
``LoaderStream`` keeps the same promises for data read from disk by a DataLoader (ImageNet),
under DDP too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from elurepro.errors import ConfigError

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
        # Member k reads group batch member_groups[k] (the rank of its seed among the seeds).
        self.member_groups = [index[s] for s in member_seeds]
        identity = self.member_groups == list(range(len(self.seeds)))
        self._expand = None if identity else torch.tensor(self.member_groups, device=self.device)
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
        """Member batches x [K, B, ...], y [K, B]. With a single seed they are expanded views of
        one batch (stride 0 along K, no copy; read-only), which batched products read as is."""
        x, y = self.batch_groups(step)
        return self.to_members(x), self.to_members(y)

    def to_members(self, t: torch.Tensor) -> torch.Tensor:
        """Per-group tensor [G, ...] -> per-member [K, ...]: itself, an expanded view (one
        seed), or a gather (see ``batch``)."""
        if self._expand is None:
            return t
        if len(self.seeds) == 1:
            return t.expand(len(self.member_groups), *t.shape[1:])
        return t[self._expand]

    def batch_groups(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch per distinct seed: x [G, B, ...], y [G, B]; member k's is entry
        ``member_groups[k]``. For populations that read shared inputs without a K-fold copy."""
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
        return x, y


class StepSampler:
    """Batch sampler whose batch for step s is a pure function of (seed, s): resumable exactly.

    Step s of epoch e = s // steps_per_epoch takes the global batch ``perm_e[b*G:(b+1)*G]``
    (b = s mod steps_per_epoch, perm_e a permutation drawn from (seed, e) like ``TensorStream``'s)
    and rank r its contiguous slice of G / world_size images. Items are (position, epoch) keys, so
    the data set can derive each image's augmentation from (seed, epoch, image) alone: the batches
    depend neither on the number of loader workers nor on the number of processes. Epochs drop
    their last len % G images (a different few each epoch), so every step has full batches.
    Iteration runs from ``start`` on, without end; the stream sets ``start`` before ``iter``.
    """

    def __init__(
        self, n: int, global_batch: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if global_batch % world_size:
            raise ConfigError(
                f"train.batch_size={global_batch} is the global batch and must be divisible by "
                f"the {world_size} processes"
            )
        if n < global_batch:
            raise ConfigError(f"{n} training images are fewer than one batch of {global_batch}")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.rank, self.local_batch = rank, global_batch // world_size
        self.steps_per_epoch = n // global_batch
        self.start = 0
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> list[int]:
        """This rank's positions (in 0..n-1) of the batch of ``step``."""
        epoch, b = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(derived_seed(self.seed, epoch, "order"))
            self._perm, self._epoch = torch.randperm(self.n, generator=gen), epoch
        lo = b * self.global_batch + self.rank * self.local_batch
        return self._perm[lo : lo + self.local_batch].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.start
        while True:
            epoch = step // self.steps_per_epoch
            yield [(i, epoch) for i in self.indices(step)]
            step += 1


class LoaderStream:
    """Training batches [K, B, ...] on the device from a DataLoader driven by a ``StepSampler``.

    The duck-typed twin of ``TensorStream`` for data that does not fit the device (ImageNet).
    ``batch_size`` is the global batch (all processes), which the logs count as images seen; B is
    this process's share. The K members of a population share the seed and so the batch.
    """

    def __init__(
        self, loader: DataLoader, sampler: StepSampler, device: torch.device, members: int = 1
    ) -> None:
        self.loader, self.sampler, self.device, self.members = loader, sampler, device, members
        self.batch_size = sampler.global_batch
        self.steps_per_epoch = sampler.steps_per_epoch
        self._batches: Iterator | None = None
        self._next_step: int | None = None

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        if step != self._next_step:
            # First call, a resumed run or a jump: restart the sampler at this step.
            self.sampler.start = step
            self._batches = _iterate(self.loader)
        x, y = next(self._batches)
        self._next_step = step + 1
        x = x.to(self.device, non_blocking=True).unsqueeze(0)
        y = y.to(self.device, non_blocking=True).unsqueeze(0)
        k = self.members
        return x.expand(k, *x.shape[1:]), y.expand(k, *y.shape[1:])


class LoaderSplit:
    """An evaluation split read through a DataLoader, with ``Split``'s ``len`` and ``chunks``.

    Under DDP each of the world_size processes reads a contiguous shard and the trainer adds up
    the shards' sums; ``len`` is always the whole split.
    """

    def __init__(
        self,
        dataset: Dataset,
        workers: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        n = len(dataset)
        if n < world_size:
            raise ConfigError(f"an evaluation split of {n} images cannot feed {world_size} ranks")
        self.dataset, self.workers, self.device = dataset, workers, device
        self.shard = range(rank * n // world_size, (rank + 1) * n // world_size)

    def __len__(self) -> int:
        return len(self.dataset)

    def chunks(self, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = DataLoader(
            Subset(self.dataset, self.shard),
            batch_size=size,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        for x, y in _iterate(loader):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _iterate(loader: DataLoader) -> Iterator:
    """``iter(loader)`` without touching the global RNG: a DataLoader draws its workers' base
    seed from it, which would shift every dropout mask after a resume (which starts an iterator
    where the uninterrupted run did not) and after every evaluation. Our data sets derive their
    randomness from (seed, epoch, image), never from the workers' seeds."""
    with torch.random.fork_rng(devices=[]):
        return iter(loader)
