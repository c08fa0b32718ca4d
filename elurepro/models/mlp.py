"""Fully connected populations: the MNIST 8x128 classifier (§5.1), the deep autoencoder (§5.2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from elurepro.monitor import Probe


class StackedLinear(nn.Module):
    """K independent linear layers; weight [K, in, out], bias [K, 1, out]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is [K, B, in] (one batch per member) or [B, in] (shared); matmul broadcasts the latter.
        return (
            torch.baddbmm(self.bias, x, self.weight)
            if x.dim() == 3
            else (torch.matmul(x, self.weight) + self.bias)
        )


class GroupedActivation(nn.Module):
    """Applies member k's activation to slice k; members with the same unit form one slice."""

    def __init__(self, activations: Sequence[nn.Module], groups: list[tuple[int, int]]) -> None:
        super().__init__()
        self.acts = nn.ModuleList(activations)
        self.groups = groups
        self.sizes = [b - a for a, b in groups]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return self.acts[0](h)
        # split, not slicing: its backward is one cat, where each slice's backward would
        # allocate and fill a zero tensor of the full size.
        return torch.cat([act(part) for act, part in zip(self.acts, h.split(self.sizes))])


class StackedMLP(nn.Module):
    """K fully connected nets ``sizes[0] -> ... -> sizes[-1]``, trained in lockstep.

    Member k uses ``activations[k]`` on every hidden layer (none on the output) and is initialised
    from ``seeds[k]`` alone (He normal, zero biases), so it starts from exactly the weights it would
    have if trained on its own, whatever else is in the population.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[Callable[[], nn.Module]],
        activation_keys: Sequence[str],
        seeds: Sequence[int],
    ) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least input and output sizes")
        if not len(activations) == len(activation_keys) == len(seeds):
            raise ValueError("one activation, key and seed per member")
        self.sizes = list(sizes)
        self.num_members = len(seeds)
        groups = _contiguous_groups(activation_keys)
        layers: list[nn.Module] = []
        weights = [he_normal_mlp(sizes, s) for s in seeds]
        for i in range(len(sizes) - 1):
            w = torch.stack([wk[i] for wk in weights])
            b = torch.zeros(self.num_members, 1, sizes[i + 1])
            layers.append(StackedLinear(w, b))
            if i < len(sizes) - 2:
                layers.append(GroupedActivation([activations[a]() for a, _ in groups], groups))
                layers.append(Probe())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [K, B, sizes[0]] (one batch per member) or [B, sizes[0]] (shared by all)."""
        return self.net(x)

    forward_shared = forward

    # The rest of the Population interface (models/population.py).
    def member_nets(self) -> None:
        return None  # members are stacked inside each layer's tensors

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        if any(rates):
            raise ValueError("the stacked MLPs have no dropout")

    def use_channels_last(self) -> None:
        pass  # no convolutions


def he_normal_mlp(sizes: Sequence[int], seed: int) -> list[torch.Tensor]:
    """He-normal weight matrices [in, out] for one member, drawn from its own generator."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n_in, n_out, generator=gen) * math.sqrt(2.0 / n_in)
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


def _contiguous_groups(keys: Sequence[str]) -> list[tuple[int, int]]:
    """[(start, end)] runs of equal keys; members must be ordered so equal keys are adjacent."""
    groups: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            groups.append((start, i))
            start = i
    seen = [keys[a] for a, _ in groups]
    if len(seen) != len(set(seen)):
        raise ValueError(f"members with the same activation must be adjacent: {list(keys)}")
    return groups
