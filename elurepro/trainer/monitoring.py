"""The monitors the loop calls at its monitor points: per-unit mean activations (``monitor.py``)
and, opt in, the §3 diagnostics (``theory.py``), on a fixed subset of the data.

They have no collectives: only rank 0 measures, for its log.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from elurepro.data.stream import Split
from elurepro.models.population import Population
from elurepro.monitor import ActivationMonitor
from elurepro.tasks import Task
from elurepro.theory import TheoryMonitor

# Per-unit mean activations, [layer][member], on the CPU: the log point's histograms.
Units = list[list[torch.Tensor]]


class Monitors:
    """Both monitors, measured on ``split`` (the diagnostics on its first ``theory_images``)."""

    def __init__(
        self,
        population: Population,
        k: int,
        split: Split,
        batch_size: int,
        task: Task,
        theory_images: int | None = None,
    ) -> None:
        self.pop = population
        self.k = k
        self.split = split
        self.batch_size = batch_size
        self.task = task
        self.activations = ActivationMonitor(population, k)
        # The §3 diagnostics on a fixed batch: the subset's first images.
        self.theory = TheoryMonitor(population, k) if theory_images else None
        self.theory_batch = split.x[:theory_images], split.y[:theory_images]

    def measure(self, lrs: Sequence[float]) -> tuple[dict[str, list[float]], Units | None]:
        """{metric: [value per member]}, and the per-unit means when there are probes to read.
        ``lrs``: each member's learning rate for the next step (the diagnostics' bias shift)."""
        metrics: dict[str, list[float]] = {}
        units = None
        if self.activations:
            found, units = self._activations()
            metrics.update(found)
        if self.theory:
            x, y = self.theory_batch
            found = self.theory.measure(x, y, self.task.per_example, list(lrs))
            metrics.update({key: value.tolist() for key, value in found.items()})
        return metrics, units

    @torch.no_grad()
    def _activations(self) -> tuple[dict[str, list[float]], Units]:
        self.pop.eval()

        def feed() -> None:
            for x, _ in self.split.chunks(self.batch_size):
                self.pop.forward_shared(x)

        medians, units = self.activations.measure_units(feed)
        result = {key: value.tolist() for key, value in medians.items()}
        # One copy to the host for all layers and members (the vectors differ in length).
        flat = [u for layer in units for u in layer]
        host = torch.cat(flat).cpu().split([len(u) for u in flat])
        self.pop.train()
        return result, [list(host[i * self.k : (i + 1) * self.k]) for i in range(len(units))]
