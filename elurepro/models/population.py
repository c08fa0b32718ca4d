"""Populations of K members trained in lockstep by one optimizer.

Two shapes of population exist: ``StackedMLP`` (weights stacked along a member dimension, one
batched matrix product per layer) for the small fully connected nets, and ``MemberList`` (K
ordinary modules called one after another) for the CNNs, whose single members already fill the
machine. Both map inputs [K, B, ...] to outputs [K, B, out]; members never share parameters, so one
SGD step over all parameters is K independent SGD steps.
"""

from __future__ import annotations

import torch
from torch import nn


class MemberList(nn.Module):
    """K independent modules; member k sees x[k]."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.channels_last = False  # set by the trainer for CNNs

    @property
    def num_members(self) -> int:
        return len(self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.members):
            raise ValueError(f"expected {len(self.members)} member inputs, got {x.shape[0]}")
        return torch.stack([m(self._layout(xk)) for m, xk in zip(self.members, x)])

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same input x [B, ...] (evaluation)."""
        x = self._layout(x)
        return torch.stack([m(x) for m in self.members])

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x
