"""The training step of a ``StackedMLP`` as one autograd node (the fast path of ``mlp.py``).

The plain module path builds, per hidden layer, a batched product, one activation per member
group, a ``cat`` of their outputs and, in the backward, a ``cat`` of their gradients, each a
separate autograd node with its own allocation. This path runs the same ATen kernels in the same
order, but writes every group's activation (and its gradient) into one preallocated tensor and
keeps the whole net in one autograd node: per layer and step it saves two full-size copies and
about ten dispatches. Same kernels on the same operands: on the development machine the results
were bit-identical to the plain path's; the tests (``tests/test_speed_paths.py``) allow 1e-6
rounding. Units without a kernel pair here, hooks, autocast and input gradients take the plain
path.

The first layer may read per-seed-group inputs x [G, B, in] (members sharing a seed see the same
batch): members whose inputs form a slice of the groups, or repeat one group, read a view of x,
so the batch is never copied K times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from elurepro.activations import ELU, SReLU

Tensor = torch.Tensor


@dataclass(frozen=True)
class PointwiseKernels:
    """An activation's forward and backward as out= calls of the ATen kernels its module uses.

    ``forward(z, out)``; ``backward(grad, z, h, out)`` with z its input and h its output.
    """

    forward: Callable[[Tensor, Tensor], object]
    backward: Callable[[Tensor, Tensor, Tensor, Tensor], object]


def pointwise_kernels(act: nn.Module) -> PointwiseKernels | None:
    """The kernel pair of ``act`` if it is one of the paper's units (exact module types only:
    a subclass may compute something else); None for any other module."""
    kind = type(act)
    aten = torch.ops.aten
    if kind in (nn.ELU, ELU) and not act.inplace:
        alpha, from_output = act.alpha, kind is ELU
        # F.elu -> aten.elu(z, alpha, 1, 1); its autograd -> elu_backward(..., is_result=False, z),
        # the suite's ELU's -> elu_backward(..., is_result=True, h)
        return PointwiseKernels(
            lambda z, out: aten.elu.out(z, alpha, 1, 1, out=out),
            lambda g, z, h, out: aten.elu_backward.grad_input(
                g, alpha, 1, 1, from_output, h if from_output else z, grad_input=out
            ),
        )
    if kind is nn.ReLU and not act.inplace:
        # torch.relu -> clamp_min(z, 0) on CPU; its autograd -> threshold_backward(g, h, 0)
        return PointwiseKernels(
            lambda z, out: torch.clamp_min(z, 0, out=out),
            lambda g, z, h, out: aten.threshold_backward.grad_input(g, h, 0, grad_input=out),
        )
    if kind is nn.LeakyReLU and not act.inplace:
        slope = act.negative_slope
        return PointwiseKernels(
            lambda z, out: aten.leaky_relu.out(z, slope, out=out),
            lambda g, z, h, out: aten.leaky_relu_backward.grad_input(
                g, z, slope, False, grad_input=out
            ),
        )
    if kind is SReLU:
        # clamp(z, min=-1)'s autograd: where(z >= -1, g, 0)
        return PointwiseKernels(
            lambda z, out: torch.clamp(z, min=-1.0, out=out),
            lambda g, z, h, out: torch.where(z >= -1.0, g, g.new_zeros(()), out=out),
        )
    return None


@dataclass(frozen=True)
class InputRun:
    """Members [start, end) and the input they read from x [G, B, in]: groups
    ``group .. group + end - start - 1`` (``repeat`` False) or group ``group`` for all (True)."""

    start: int
    end: int
    group: int
    repeat: bool

    def view(self, x: Tensor) -> Tensor:
        n = self.end - self.start
        if self.repeat:
            return x[self.group].expand(n, *x.shape[1:])  # stride 0: no copy (bmm reads it)
        return x[self.group : self.group + n]


def input_runs(groups: Sequence[int]) -> list[InputRun]:
    """Split members into runs whose inputs are views of the group batches (greedy, in order).

    Activation-major populations with the seeds innermost (the suite's order) give one run per
    activation x learning rate; one shared seed gives one run.
    """
    runs: list[InputRun] = []
    start, n = 0, len(groups)
    while start < n:
        end = start + 1
        if end < n and groups[end] == groups[start]:
            while end < n and groups[end] == groups[start]:
                end += 1
            runs.append(InputRun(start, end, int(groups[start]), True))
        else:
            while end < n and groups[end] == groups[end - 1] + 1:
                end += 1
            runs.append(InputRun(start, end, int(groups[start]), False))
        start = end
    return runs


def _storage_users(t: Tensor) -> int:
    """References to t's storage (a private counter; -1 where this torch lacks it)."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    return -1 if count is None else count(t.untyped_storage()._cdata)


class GradBuffers:
    """Reused storage for weight gradients.

    glibc maps every allocation above 32 MiB afresh, so a new 50 MB gradient (the autoencoder's
    784 x 1000 layers, 16 members) costs a page fault per 4 KiB on every step, about as long as
    the product that fills it. A buffer is handed out again only while nothing but this pool
    refers to its storage (the last step's ``.grad`` was set to None, as the trainer does);
    otherwise a fresh tensor is made, so a gradient someone still holds is never overwritten.
    The tensor handed out aliases the buffer without being a view, so autograd stores it as
    ``.grad`` without a copy.
    """

    def __init__(self) -> None:
        self._buffers: dict[int, Tensor] = {}
        self._alone = _storage_users(torch.empty(1))  # the count of a tensor nobody else shares

    def take(self, key: int, like: Tensor) -> Tensor:
        buf = self._buffers.get(key)
        fits = (
            buf is not None
            and buf.shape == like.shape
            and buf.dtype == like.dtype
            and buf.device == like.device
        )
        if not fits or self._alone < 0 or _storage_users(buf) > self._alone:
            buf = torch.empty(like.shape, dtype=like.dtype, device=like.device)
            self._buffers[key] = buf
        out = torch.empty(0, dtype=buf.dtype, device=buf.device)
        return out.set_(buf.untyped_storage(), 0, buf.shape, buf.stride())


@dataclass(frozen=True)
class StackPlan:
    """What the fused node needs besides tensors: the first layer's input runs, and per hidden
    layer the member slices (start, end) with their activation kernels."""

    runs: tuple[InputRun, ...]
    acts: tuple[tuple[tuple[int, int, PointwiseKernels], ...], ...]
    grads: GradBuffers | None = None  # where weight gradients go (None: fresh tensors)


class FusedStack(torch.autograd.Function):
    """Forward and backward of all layers of a stacked MLP in one node.

    Inputs: the plan, x [G, B, in], then weight [K, in, out] and bias [K, 1, out] of every layer.
    Per layer the same ops as ``StackedLinear`` + ``GroupedActivation`` and their autograd
    formulas: baddbmm forward; grads bmm(dz, W^T), bmm(h^T, dz), dz.sum(1, keepdim=True).
    """

    @staticmethod
    def forward(ctx, plan: StackPlan, x: Tensor, *params: Tensor) -> Tensor:
        weights, biases = params[0::2], params[1::2]
        k, b = weights[0].shape[0], x.shape[1]
        z = x.new_empty(k, b, weights[0].shape[2])
        for run in plan.runs:
            s, e = run.start, run.end
            torch.baddbmm(biases[0][s:e], run.view(x), weights[0][s:e], out=z[s:e])
        saved = []  # per hidden layer: pre-activation z, activation h
        for i in range(1, len(weights)):
            h = torch.empty_like(z)
            for s, e, kernels in plan.acts[i - 1]:
                kernels.forward(z[s:e], h[s:e])
            saved += [z, h]
            z = torch.baddbmm(biases[i], h, weights[i])
        ctx.plan = plan
        ctx.save_for_backward(x, *weights, *saved)
        return z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        plan = ctx.plan
        x, *rest = ctx.saved_tensors
        n = (len(rest) + 2) // 3  # layers: n weights and 2 (n - 1) saved activations
        weights, saved = rest[:n], rest[n:]
        needs = ctx.needs_input_grad[2:]
        grads: list[Tensor | None] = [None] * (2 * n)
        dz = grad
        for i in range(n - 1, -1, -1):
            if needs[2 * i + 1]:
                grads[2 * i + 1] = dz.sum(1, keepdim=True)
            if i == 0:
                if needs[0]:
                    dw = _weight_grad(plan, 0, weights[0])
                    for run in plan.runs:
                        s, e = run.start, run.end
                        torch.bmm(run.view(x).transpose(1, 2), dz[s:e], out=dw[s:e])
                    grads[0] = dw
                break
            z_prev, h_prev = saved[2 * (i - 1)], saved[2 * (i - 1) + 1]
            if needs[2 * i]:
                dw = _weight_grad(plan, i, weights[i])
                grads[2 * i] = torch.bmm(h_prev.transpose(1, 2), dz, out=dw)
            dh = torch.bmm(dz, weights[i].transpose(1, 2))
            dz = torch.empty_like(dh)
            for s, e, kernels in plan.acts[i - 1]:
                kernels.backward(dh[s:e], z_prev[s:e], h_prev[s:e], dz[s:e])
        # x (a data batch) gets no gradient; the first layer's input gradient is never formed.
        return (None, None, *grads)


def _weight_grad(plan: StackPlan, layer: int, weight: Tensor) -> Tensor:
    if plan.grads is None:
        return torch.empty_like(weight, memory_format=torch.contiguous_format)
    return plan.grads.take(layer, weight)
