"""Mean-activation monitor (docs/protocol.md §3 and §5.1).

Models put a ``Probe`` after every hidden activation. During a monitoring pass over a fixed data
subset the monitor sums each probe's output per unit (a channel, for conv maps) and per member,
then reports, per member, the median over units of the per-unit mean activation: pooled over all
hidden units and per layer. ``measure_units`` also hands out the per-unit means themselves (one
vector per layer and member, for TensorBoard's histograms). Outside that pass the hooks do nothing,
so training pays nothing.
"""

from __future__ import annotations

import torch
from torch import nn


class Probe(nn.Identity):
    """Marks a hidden layer's output; the monitor hooks these."""


class _Accumulator:
    def __init__(self, member: int | None) -> None:
        self.member = member  # None: the output carries all members on its leading dim
        self.sum: torch.Tensor | None = None
        self.count = 0

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        h = output.detach()
        if self.member is not None:
            h = h.unsqueeze(0)  # [1, B, units, ...]
        # Per unit: sum over the batch and any spatial positions.
        per_unit = h.sum(dim=1)
        if per_unit.dim() > 2:
            per_unit = per_unit.flatten(2).sum(dim=2)
            self.count += h.shape[1] * h[0, 0, 0].numel()
        else:
            self.count += h.shape[1]
        per_unit = per_unit.double()
        self.sum = per_unit if self.sum is None else self.sum + per_unit

    def means(self) -> torch.Tensor:
        assert self.sum is not None, "monitor pass saw no data"
        return self.sum / self.count


class ActivationMonitor:
    """Collects per-unit mean activations of every probe of a population during ``measure``."""

    def __init__(self, population: nn.Module, num_members: int) -> None:
        self.num_members = num_members
        self._probes: list[tuple[Probe, int | None, int]] = []  # probe, member, layer index
        members = population.member_nets()  # the Population interface (models/population.py)
        if members is not None:
            for k, member in enumerate(members):
                for layer, probe in enumerate(_probes_of(member)):
                    self._probes.append((probe, k, layer))
        else:
            for layer, probe in enumerate(_probes_of(population)):
                self._probes.append((probe, None, layer))
        self.num_layers = 1 + max((layer for _, _, layer in self._probes), default=-1)

    def __bool__(self) -> bool:
        return bool(self._probes)

    @torch.no_grad()
    def measure(self, forward: callable) -> dict[str, torch.Tensor]:
        """Run ``forward()`` (which feeds the subset) and return {metric: tensor [K]}."""
        return self.measure_units(forward)[0]

    @torch.no_grad()
    def measure_units(
        self, forward: callable
    ) -> tuple[dict[str, torch.Tensor], list[list[torch.Tensor]]]:
        """``measure``'s medians, and the per-unit means themselves: ``units[layer][member]`` is
        a float64 vector with one entry per unit of that layer (left on the device)."""
        accs = [_Accumulator(member) for _, member, _ in self._probes]
        handles = [p.register_forward_hook(a) for (p, _, _), a in zip(self._probes, accs)]
        try:
            forward()
        finally:
            for h in handles:
                h.remove()
        # layer -> list over members of per-unit means
        per_layer: list[list[torch.Tensor | None]] = [
            [None] * self.num_members for _ in range(self.num_layers)
        ]
        for (_, member, layer), acc in zip(self._probes, accs):
            means = acc.means()
            if member is None:
                for k in range(self.num_members):
                    per_layer[layer][k] = means[k]
            else:
                per_layer[layer][member] = means[0]
        out: dict[str, torch.Tensor] = {}
        pooled = [
            torch.cat([per_layer[i][k] for i in range(self.num_layers)])
            for k in range(self.num_members)
        ]
        # quantile(0.5) interpolates for an even count of units, like numpy.median.
        out["act/median"] = torch.stack([u.quantile(0.5) for u in pooled])
        for i in range(self.num_layers):
            out[f"act/median/layer{i + 1}"] = torch.stack(
                [per_layer[i][k].quantile(0.5) for k in range(self.num_members)]
            )
        return out, per_layer


def _probes_of(module: nn.Module) -> list[Probe]:
    return [m for m in module.modules() if isinstance(m, Probe)]
