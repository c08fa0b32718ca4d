"""Evaluation of every member on whole splits, at the loop's evaluation points and at the end."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from elurepro import distributed
from elurepro.data.stream import LoaderSplit, Split
from elurepro.distributed import DistContext
from elurepro.models.population import Population
from elurepro.tasks import Task
from elurepro.trainer.execution import autocast


class Evaluator:
    """Per-member means of the task's metrics over a split. Under DDP each rank evaluates its
    shard of the split, and sums and image counts are added up over ranks."""

    def __init__(
        self,
        population: Population,
        task: Task,
        k: int,
        batch_size: int,
        bf16: bool,
        dist: DistContext | None,
    ) -> None:
        self.pop = population
        self.task = task
        self.k = k
        self.batch_size = batch_size
        self.bf16 = bf16
        self.dist = dist

    @torch.no_grad()
    def evaluate(self, splits: Mapping[str, Split | LoaderSplit]) -> dict[str, list[float]]:
        """{"<split>/<metric>": [value per member]}."""
        device = next(self.pop.parameters()).device
        self.pop.eval()
        out: dict[str, list[float]] = {}
        for name, split in splits.items():
            sums: dict[str, torch.Tensor] = {}
            count = 0  # images this rank evaluated: its shard under DDP, else the whole split
            for x, y in split.chunks(self.batch_size):
                with autocast(device, self.bf16):
                    logits = self.pop.forward_shared(x)
                for key, value in self.task.eval_sums(logits, x, y).items():
                    sums[key] = sums.get(key, 0) + value
                count += x.shape[0]
            keys = list(sums)
            counts = torch.full((1, self.k), float(count), dtype=torch.float64, device=device)
            total = distributed.sum_over_ranks(
                self.dist, torch.cat([torch.stack([sums[key] for key in keys]), counts])
            )
            # One copy to the host per split, not one per metric.
            for key, means in zip(keys, (total[:-1] / total[-1]).tolist()):
                out[f"{name}/{key}"] = means
        self.pop.train()
        return out
