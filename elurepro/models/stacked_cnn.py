"""K paper CNNs of one architecture trained in lockstep as ONE net of grouped convolutions.

Member k's channels sit side by side in every feature map, [B, K * C, H, W] (member-major), so a
conv layer of all K members is one ``Conv2d(groups=K)``, per-member BatchNorm is one BatchNorm2d
over K * C channels (its statistics are per channel, hence per member), activations apply to
channel ranges and max-pooling is per channel anyway. Each member keeps its own activation, BN
setting, dropout masks (a ``torch.Generator`` per member, seeded from (seed, step)) and input
batch. Members are built as ordinary ``StackConvNet``s (so seed r gives the weights it gives
alone) and copied in; ``member_state_dict`` gives a member back in ``StackConvNet``'s layout.

Two exact reorderings run where nothing observes the difference (no hooks on the probes):
max-pooling before the activation of each stack's last layer (max commutes with a
non-decreasing unit, so the activation runs on a quarter of the values), and the activations of
several units written into one tensor instead of a ``cat``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from elurepro.data.stream import derived_seed
from elurepro.errors import ConfigError
from elurepro.models.convnet import StackConvNet, dropout_mask, non_decreasing
from elurepro.models.fused import PointwiseKernels, pointwise_kernels
from elurepro.monitor import Probe

Tensor = torch.Tensor


def dropout_seed(seed: int, step: int) -> int:
    """The seed of a member's dropout generator at ``step``: alone and stacked alike."""
    return derived_seed(seed, step, "dropout")


class _ChannelRuns(torch.autograd.Function):
    """Activations of several units on channel ranges of z, written into one tensor."""

    @staticmethod
    def forward(ctx, z: Tensor, runs: tuple[tuple[int, int, PointwiseKernels], ...]) -> Tensor:
        h = torch.empty_like(z)
        for a, b, kernels in runs:
            kernels.forward(z[:, a:b], h[:, a:b])
        ctx.runs = runs
        ctx.save_for_backward(z, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        z, h = ctx.saved_tensors
        dz = torch.empty_like(z)
        for a, b, kernels in ctx.runs:
            kernels.backward(grad[:, a:b], z[:, a:b], h[:, a:b], dz[:, a:b])
        return dz, None


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient dense: the gradient of a ``cat`` input is a
    strided slice, on which BN's backward kernel is several times slower."""

    @staticmethod
    def forward(ctx, x: Tensor, fmt: torch.memory_format) -> Tensor:
        ctx.fmt = fmt
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad.contiguous(memory_format=ctx.fmt), None


class _MemberMasks(torch.autograd.Function):
    """x [B, K * C, H, W] times per-member masks [K, B, C, H, W], in x's memory layout."""

    @staticmethod
    def forward(ctx, x: Tensor, masks: Tensor) -> Tensor:
        out = torch.empty_like(x)
        torch.mul(_split(x, masks), masks.transpose(0, 1), out=_split(out, masks))
        ctx.save_for_backward(masks)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (masks,) = ctx.saved_tensors
        if not _splittable(grad, masks.shape[0]):
            grad = grad.contiguous()
        dx = torch.empty_like(grad)
        torch.mul(_split(grad, masks), masks.transpose(0, 1), out=_split(dx, masks))
        return dx, None


def _split(t: Tensor, masks: Tensor) -> Tensor:
    b, _, h, w = t.shape
    return t.view(b, masks.shape[0], -1, h, w)


def _splittable(t: Tensor, k: int) -> bool:
    try:
        t.view(t.shape[0], k, -1, *t.shape[2:])
    except RuntimeError:
        return False
    return True


class _Layer(nn.Module):
    """One conv layer of all members: [pad ->] grouped conv -> [BN] -> units -> probe -> drop."""

    def __init__(
        self,
        members: Sequence[nn.Module],
        runs: list[tuple[int, int, nn.Module]],
        num_plain: int,
        first: bool,
    ) -> None:
        super().__init__()
        ref = members[0]
        k = len(members)
        conv = ref.conv
        self.pad = copy.deepcopy(ref.pad)
        self.out_channels = conv.out_channels
        # skip_init: the weights are copied in; the global RNG is left alone.
        self.conv = nn.utils.skip_init(
            nn.Conv2d,
            conv.in_channels * k,
            conv.out_channels * k,
            conv.kernel_size,
            padding=conv.padding,
            groups=k,
        )
        with torch.no_grad():
            self.conv.weight.copy_(torch.cat([m.conv.weight for m in members]))
            self.conv.bias.copy_(torch.cat([m.conv.bias for m in members]))
        self.first = first
        hidden = isinstance(ref.probe, Probe)  # the class-score layer has neither unit nor BN
        bns = [m.bn for m in members[num_plain:]] if hidden else []
        self.num_plain = num_plain if bns else k  # members [num_plain, K) have BN
        self.bn = _cat_batchnorm(bns) if bns else nn.Identity()
        self.acts = nn.ModuleList([act for _, _, act in runs]) if hidden else nn.ModuleList()
        c = conv.out_channels
        self.act_ranges = [(a * c, b * c) for a, b, _ in runs] if hidden else []
        kernels = [pointwise_kernels(act) for act in self.acts]
        self.kernels = (
            tuple((a, b, kk) for (a, b), kk in zip(self.act_ranges, kernels))
            if all(kk is not None for kk in kernels)
            else None
        )
        # Units for which max(f(a), f(b)) = f(max(a, b)): pooling may come first.
        self.monotone = hidden and all(non_decreasing(act) for act in self.acts)
        self.probe = Probe() if hidden else nn.Identity()
        self.drop_p = 0.0

    def pre_activation(self, x: Tensor, shared: bool) -> Tensor:
        x = self.pad(x)
        conv = self.conv
        groups = 1 if shared and self.first else conv.groups
        z = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, 1, groups)
        if isinstance(self.bn, nn.Identity):
            return z
        split = self.num_plain * self.out_channels
        if split == 0:
            return self.bn(z)
        # BN members' channels (and their gradient) as dense tensors: BN's kernels on a strided
        # channel slice run several times slower than a copy plus the dense kernels.
        fmt = _format(z)
        bn_out = self.bn(z[:, split:].contiguous(memory_format=fmt))
        return torch.cat([z[:, :split], _DenseGrad.apply(bn_out, fmt)], dim=1)

    def activation(self, z: Tensor, fast: bool) -> Tensor:
        if not self.acts:
            return z
        if len(self.acts) == 1:
            return self.acts[0](z)
        if fast and self.kernels is not None and torch.is_grad_enabled():
            return _ChannelRuns.apply(z, self.kernels)
        return torch.cat([act(z[:, a:b]) for act, (a, b) in zip(self.acts, self.act_ranges)], 1)


def _format(t: Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _cat_batchnorm(bns: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    ref = bns[0]
    bn = nn.BatchNorm2d(
        ref.num_features * len(bns), eps=ref.eps, momentum=ref.momentum, affine=ref.affine
    )
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(bn, name).copy_(torch.cat([getattr(b, name) for b in bns]))
        bn.num_batches_tracked.copy_(ref.num_batches_tracked)
    return bn


class StackedConvNets(nn.Module):
    """K ``StackConvNet``s (same stacks, input and convention; any units and BN settings) as one
    population: inputs [K, B, C, H, W] (member batches; a stride-0 expansion of one batch is
    read once), [B, C, H, W] (shared), or per-seed batches [G, B, ...] with ``groups``; outputs
    [K, B, classes]. ``seeds[k]`` seeds member k's dropout masks (see ``seed_dropout``)."""

    def __init__(self, nets: Sequence[StackConvNet], seeds: Sequence[int]) -> None:
        super().__init__()
        if not nets or len(nets) != len(seeds):
            raise ValueError("one seed per member net, at least one net")
        ref = nets[0]
        for net in nets[1:]:
            same = (
                net.stack_specs == ref.stack_specs
                and (net.in_channels, net.input_size) == (ref.in_channels, ref.input_size)
                and net.convention == ref.convention
                and [r.padding for r in net.shapes] == [r.padding for r in ref.shapes]
            )
            if not same:
                raise ConfigError("a stacked CNN population needs members of one architecture")
        self.num_members = k = len(nets)
        self.seeds = [int(s) for s in seeds]
        self.in_channels, self.input_size = ref.in_channels, ref.input_size
        self.num_classes = ref.num_classes
        self.shapes = ref.shapes
        # Internal order: members without BN first, then by unit, so that BN and every unit
        # cover one channel range each. order[i] is the member at internal position i.
        first_layers = [net.stacks[0].layers[0] for net in nets]
        keys = [
            (not isinstance(layer.bn, nn.Identity), _unit_key(layer.act, m))
            for m, layer in enumerate(first_layers)
        ]
        self.order = sorted(range(k), key=lambda m: keys[m])
        self.position = [self.order.index(m) for m in range(k)]  # member -> internal position
        self.batchnorm = [keys[m][0] for m in range(k)]
        num_plain = sum(not bn for bn, _ in keys)
        inner = [nets[m] for m in self.order]
        runs = _runs([keys[m][1] for m in self.order])
        stacks = []
        for s, ref_stack in enumerate(ref.stacks):
            layers = nn.ModuleList()
            for j in range(len(ref_stack.layers)):
                members = [net.stacks[s].layers[j] for net in inner]
                unit_runs = [(a, b, copy.deepcopy(members[a].act)) for a, b in runs]
                layers.append(_Layer(members, unit_runs, num_plain, first=(s == 0 and j == 0)))
            stack = nn.Module()
            stack.layers = layers
            stack.pool = copy.deepcopy(ref_stack.pool)
            stack.drop_p = 0.0
            stacks.append(stack)
        self.stacks = nn.ModuleList(stacks)
        self.head = copy.deepcopy(ref.head)
        self.channels_last = False
        self.fast = True  # False: the plain order of operations (the reference)
        self._generators: dict[tuple[str, int], list[torch.Generator]] = {}
        self.set_dropout(ref.dropout_rates, ref.dropout_all_layers)

    # ------------------------------------------------------------------ Population interface
    def forward(self, x: Tensor, groups: Sequence[int] | None = None) -> Tensor:
        k = self.num_members
        expected = (self.in_channels, self.input_size, self.input_size)
        if tuple(x.shape[-3:]) != expected:
            raise ConfigError(
                f"stacked CNN built for images {list(expected)}, got inputs {list(x.shape)}"
            )
        ordered = self.order  # which input batch each internal position reads
        if groups is not None:
            if len(groups) != k or x.dim() != 5:
                raise ValueError(f"groups: {k} indices into per-seed batches [G, B, C, H, W]")
            if x.shape[0] == 1:
                x = x[0]
            else:
                ordered = [int(groups[m]) for m in self.order]
        if x.dim() == 5 and x.stride(0) == 0:
            x = x[0]  # one batch for all: the first conv reads it once
        shared = x.dim() == 4
        if shared:
            h = self._layout(x)
        else:
            if groups is None and x.shape[0] != k:
                raise ValueError(f"expected {k} member inputs, got {x.shape[0]}")
            if ordered != list(range(x.shape[0])):
                x = x[torch.as_tensor(ordered, device=x.device)]
            h = self._layout(x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:]))
        for stack in self.stacks:
            h = self._stack(stack, h, shared)
        h = self.head(h).flatten(1)
        out = h.view(h.shape[0], k, -1).transpose(0, 1)  # [K, B, classes], internal order
        if self.order != list(range(k)):
            out = out[torch.as_tensor(self.position, device=out.device)]
        return out

    def forward_shared(self, x: Tensor) -> Tensor:
        """Every member on the same input x [B, C, H, W] (evaluation)."""
        return self(x)

    def member_nets(self) -> None:
        return None  # members are stacked inside each layer's tensors

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        """As ``StackConvNet.set_dropout``: one rate per stack, after its pooling; with
        ``all_layers`` after every layer of the stack as well."""
        rates = [float(r) for r in rates]
        if len(rates) != len(self.stacks):
            raise ConfigError(
                f"{len(rates)} dropout rates for {len(self.stacks)} stacks; give one per stack"
            )
        if any(not 0.0 <= r < 1.0 for r in rates):
            raise ConfigError(f"dropout rates must be in [0, 1), got {rates}")
        for stack, rate in zip(self.stacks, rates):
            stack.drop_p = rate
            for layer in stack.layers[:-1]:
                layer.drop_p = rate if all_layers else 0.0
        self.dropout_all_layers = bool(all_layers)

    @property
    def dropout_rates(self) -> list[float]:
        return [stack.drop_p for stack in self.stacks]

    def use_channels_last(self) -> None:
        self.to(memory_format=torch.channels_last)
        self.channels_last = True

    def seed_dropout(self, step: int) -> None:
        """Seed member k's mask generator from (seeds[k], step), as ``dropout_seed``: the masks
        of a step depend on nothing else (resumable, and equal to the member's alone)."""
        device = next(self.parameters()).device
        for gen, seed in zip(self._member_generators(device), self.seeds):
            gen.manual_seed(dropout_seed(seed, step))

    # ------------------------------------------------------------------ members
    def member_state_dict(self, member: int) -> dict[str, Tensor]:
        """Member ``member``'s parameters and BN buffers in ``StackConvNet``'s keys."""
        i = self.position[member]
        state: dict[str, Tensor] = {}
        for s, stack in enumerate(self.stacks):
            for j, layer in enumerate(stack.layers):
                key = f"stacks.{s}.layers.{j}"
                c = layer.out_channels
                state[f"{key}.conv.weight"] = layer.conv.weight[i * c : (i + 1) * c].clone()
                state[f"{key}.conv.bias"] = layer.conv.bias[i * c : (i + 1) * c].clone()
                if self.batchnorm[member] and isinstance(layer.bn, nn.BatchNorm2d):
                    lo = (i - layer.num_plain) * c
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        value = getattr(layer.bn, name)[lo : lo + c]
                        state[f"{key}.bn.{name}"] = value.detach().clone()
                    state[f"{key}.bn.num_batches_tracked"] = layer.bn.num_batches_tracked.clone()
                for r, (a, b) in enumerate(layer.act_ranges):
                    if a <= i * c < b:
                        for name, p in layer.acts[r].named_parameters():
                            state[f"{key}.act.{name}"] = p.detach().clone()
        return state

    # ------------------------------------------------------------------ internals
    def _stack(self, stack: nn.Module, h: Tensor, shared: bool) -> Tensor:
        layers = stack.layers
        for j, layer in enumerate(layers):
            z = layer.pre_activation(h, shared)
            shared = False
            if not layer.acts:  # the class-score layer
                h = z
                continue
            last = j == len(layers) - 1
            observed = bool(layer.probe._forward_hooks or layer.probe._forward_pre_hooks)
            if last and self.fast and layer.monotone and not observed and _pools(stack.pool):
                h = layer.activation(stack.pool(z), self.fast)
                return self._drop(h, stack.drop_p)
            h = layer.activation(z, self.fast)
            if observed:
                layer.probe(self._members_first(h))
            h = self._drop(h, layer.drop_p)
        return self._drop(stack.pool(h), stack.drop_p)

    def _members_first(self, h: Tensor) -> Tensor:
        """[B, K * C, ...] -> [K, B, C, ...] in member order, as the activation monitor reads."""
        k = self.num_members
        view = h.view(h.shape[0], k, -1, *h.shape[2:]).transpose(0, 1)
        if self.order == list(range(k)):
            return view
        return view[torch.as_tensor(self.position, device=h.device)]

    def _drop(self, h: Tensor, p: float) -> Tensor:
        if p == 0.0 or not self.training:
            return h
        k = self.num_members
        b, _, height, width = h.shape
        masks = torch.empty(k, b, h.shape[1] // k, height, width, dtype=h.dtype, device=h.device)
        gens = self._member_generators(h.device)
        for i, m in enumerate(self.order):
            dropout_mask(masks[i].shape, p, gens[m], out=masks[i])
        if not _splittable(h, k):
            h = h.contiguous()
        return _MemberMasks.apply(h, masks)

    def _member_generators(self, device: torch.device) -> list[torch.Generator]:
        key = (device.type, device.index or 0)
        if key not in self._generators:
            gens = [torch.Generator(device=device) for _ in self.seeds]
            for gen, seed in zip(gens, self.seeds):
                gen.manual_seed(dropout_seed(seed, 0))
            self._generators[key] = gens
        return self._generators[key]

    def _layout(self, x: Tensor) -> Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x.contiguous()


def _unit_key(act: nn.Module, member: int) -> str:
    """Members whose units compare equal share a channel range; a unit with parameters
    (PReLU) is the member's own."""
    if any(True for _ in act.parameters()):
        return f"{act!r}#{member}"
    return repr(act)


def _runs(keys: Sequence[str]) -> list[tuple[int, int]]:
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            runs.append((start, i))
            start = i
    return runs


def _pools(pool: nn.Module) -> bool:
    return isinstance(pool, nn.MaxPool2d)
