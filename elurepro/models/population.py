"""Populations of K members trained in lockstep by one optimizer, and the interface they share.

Two shapes of population exist: ``StackedMLP`` (weights stacked along a member dimension, one
batched matrix product per layer) for the small fully connected nets, and ``MemberList`` (K
ordinary modules called one after another) for the CNNs, whose single members already fill the
machine. Both map inputs [K, B, ...] to outputs [K, B, out]; members never share parameters, so one
SGD step over all parameters is K independent SGD steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Population(Protocol):
    """What the trainer and the monitors use of a population of K members."""

    num_members: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Member k's batch x[k] -> outputs [K, B, out]."""
        ...

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """One batch x [B, ...] through every member (evaluation) -> [K, B, out]."""
        ...

    def member_nets(self) -> Sequence[nn.Module] | None:
        """The K member modules, or None where members are stacked inside shared tensors (the
        monitors then read the member dimension of each layer's output)."""
        ...

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        """Dropout rates per stack (schedule phases); populations without dropout refuse rates."""
        ...

    def use_channels_last(self) -> None:
        """Switch parameters and inputs to channels-last where that helps (conv nets)."""
        ...


class MemberList(nn.Module):
    """K independent modules; member k sees x[k]."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.channels_last = False

    @property
    def num_members(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.members):
            raise ValueError(f"expected {len(self.members)} member inputs, got {x.shape[0]}")
        return torch.stack([m(self._layout(xk)) for m, xk in zip(self.members, x)])

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        x = self._layout(x)
        return torch.stack([m(x) for m in self.members])

    def member_nets(self) -> Sequence[nn.Module]:
        return list(self.members)

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        for member in self.members:
            if hasattr(member, "set_dropout"):
                member.set_dropout(rates, all_layers)
            elif any(rates):
                raise ValueError(f"{type(member).__name__} has no per-stack dropout to set")

    def use_channels_last(self) -> None:
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x
