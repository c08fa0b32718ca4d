"""Fully connected populations: the MNIST 8x128 classifier (§5.1), the deep autoencoder (§5.2)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from elurepro.models.fused import (
    FusedStack,
    GradBuffers,
    InputRun,
    PointwiseKernels,
    StackPlan,
    input_runs,
    pointwise_kernels,
)
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

        # Per hidden layer: the member slices of each activation with its kernel pair, or None
        # if some unit has none (then training takes the plain module path).
        self._acts: list[tuple[tuple[int, int, PointwiseKernels], ...]] | None = []
        for layer in self.net:
            if isinstance(layer, GroupedActivation):
                kernels = [pointwise_kernels(act) for act in layer.acts]
                if any(k is None for k in kernels):
                    self._acts = None
                    break
                self._acts.append(tuple((a, b, k) for (a, b), k in zip(layer.groups, kernels)))
        self._runs: dict[tuple[int, ...], tuple[InputRun, ...]] = {}
        self._grads = GradBuffers()
        self.fused = True  # False: always the plain module path (the reference)

    def forward(self, x: torch.Tensor, groups: Sequence[int] | None = None) -> torch.Tensor:
        """Outputs [K, B, sizes[-1]] for inputs x: [K, B, sizes[0]] (one batch per member; an
        expanded view is read without a copy), [B, sizes[0]] (shared by all), or with ``groups``
        (K group indices) [G, B, sizes[0]], member k reading x[groups[k]] (``TensorStream``'s
        per-seed batches). Training takes the fused path where it applies (see ``fused.py``)."""
        if groups is not None and len(groups) != self.num_members:
            raise ValueError(f"{len(groups)} group indices for {self.num_members} members")
        if self._can_fuse(x):
            if x.dim() == 2:
                x, groups = x.unsqueeze(0), [0] * self.num_members
            elif groups is None:
                if x.shape[0] != self.num_members:
                    raise ValueError(f"expected {self.num_members} member inputs, got {x.shape[0]}")
                groups = range(self.num_members)
            key = tuple(map(int, groups))
            if key not in self._runs:
                self._runs[key] = tuple(input_runs(key))
            plan = StackPlan(self._runs[key], tuple(self._acts), self._grads)
            params = [
                p
                for layer in self.net
                if isinstance(layer, StackedLinear)
                for p in (layer.weight, layer.bias)
            ]
            return FusedStack.apply(plan, x, *params)
        if groups is not None:
            x = x[torch.as_tensor(list(groups), device=x.device)]
        return self.net(x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        """Every member on the same input x [B, sizes[0]] (evaluation, the monitors)."""
        return self.net(x)

    def _can_fuse(self, x: torch.Tensor) -> bool:
        """The fused node computes what the modules compute only for plain tensors under
        autograd, without autocast, input gradients or hooks (the monitors hook the probes)."""
        if not (self.fused and self._acts is not None and torch.is_grad_enabled()):
            return False
        if x.requires_grad or torch.is_autocast_enabled(x.device.type):
            return False
        if torch.compiler.is_compiling():
            return False
        if _global_module_hooks():
            return False
        return not any(
            m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
            for m in self.net.modules()
        )

    # The rest of the Population interface (models/population.py).
    def member_nets(self) -> None:
        return None  # members are stacked inside each layer's tensors

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        if any(rates):
            raise ValueError("the stacked MLPs have no dropout")

    def use_channels_last(self) -> None:
        pass  # no convolutions


def _global_module_hooks() -> bool:
    from torch.nn.modules import module as m

    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
    )


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
