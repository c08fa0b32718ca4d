"""The paper's §2 theory as per-layer diagnostics, measured on a fixed batch (docs/protocol.md §3).

``TheoryMonitor(population, K).measure(x, y, loss_fn, lr)`` returns {metric: float64 [K]}.
Receiving layers are every Linear / Conv2d / StackedLinear of a member except its first (which
receives the data), in module order; the N-th of them is ``layerN``. In the project's nets every
weight layer but the last is followed by exactly one ``Probe``, so layerN is the layer fed by
hidden layer N of the activation monitor (``act/median/layerN``), possibly through pooling, SPP
and (inactive) dropout. Per receiving layer and member:

- ``mu_abs_median`` / ``mu_abs_mean``: median / mean over incoming units of |mu|, mu = E[z] per
  incoming unit (for conv inputs a channel: mean over images and positions, padding excluded).
- ``q``: mu^T (E[z z^T] + eps I)^-1 mu of the incoming vector z (a conv's receptive-field patch,
  padding zeros included), over the sampled rows. In [0, 1); 0 for zero-mean inputs.
- ``q_delta``: the same with row weights w_i ∝ delta_ij^2, per receiving unit j; median over units.
- ``bias_shift_ratio``: for one plain SGD step on the mean-over-batch loss, the median over units
  of |mu^T dw_j| / (|db_j| + tiny): the shift of unit j's mean net input caused by its weight
  update against its bias update (lr cancels). ``bias_shift_per_lr``: median |mu^T dw_j| / lr.
  ``bias_shift`` (only when ``lr`` is given): median |mu^T dw_j| for that lr.
- ``ng_cos``: cosine between unit j's ordinary gradient g_j = E[delta_j z~] (z~ = (z, 1)) and
  its unit natural gradient (F_j + lambda I)^-1 g_j, F_j = E[delta_j^2 z~ z~^T]; median over units.
  F_j is the empirical Fisher (delta from the data's labels, not from labels drawn from the
  model's predictions), and above ``max_dim`` incoming coordinates it is a random sub-block.

Pooled metrics (no ``/layerN``): per-unit quantities (q_delta, bias_shift*, ng_cos) and
mu_abs_median: the median over all units of all receiving layers (sampled units, for q_delta and
ng_cos); mu_abs_mean: the mean over all incoming units; q: the median over layers. Medians skip
NaN (units whose delta is zero on every row, e.g. dead ReLUs, have no q_delta, ng_cos or
bias_shift_ratio; their bias_shift_per_lr is a true 0).

delta is the per-example derivative of the loss (the negative log-likelihood) w.r.t. the unit's
net input, i.e. minus the paper's delta; every reported quantity is invariant to that sign.
Rows are examples (linear layers) or (image, output position) pairs (conv layers). In BN nets
the statistics are those of eval mode (BN as the fixed affine map of its running statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elurepro.models.mlp import StackedLinear
from elurepro.tasks import Classification, Reconstruction

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``loss_fn(out [K, B, ...], x, y) -> per-member per-example losses [K, B]``."""

# Per-unit quantities; pooled over layers as the median over all (sampled) units of all layers.
UNIT_QUANTITIES = ("q_delta", "bias_shift_ratio", "bias_shift_per_lr", "ng_cos")
# Multiplies a seed into a per-layer generator seed, so layers draw unrelated subsets.
_SEED_STRIDE = 1_000_003
_TINY = torch.finfo(torch.float64).tiny


# ---------------------------------------------------------------------------- linear algebra
def _ridge_solve(a: torch.Tensor, b: torch.Tensor, ridge: torch.Tensor) -> torch.Tensor:
    """(a + ridge I)^-1 b for symmetric PSD a [..., n, n], b [..., n]; NaN where not finite."""
    a = a.clone()
    # A zero ridge (all-zero input) would make a singular system whose right side is zero too.
    a.diagonal(dim1=-2, dim2=-1).add_(ridge.clamp_min(_TINY)[..., None])
    # A sum is non-finite iff an entry is (short of overflow); isfinite itself was slow here.
    finite = torch.isfinite(a.sum((-2, -1)) + b.sum(-1))
    all_finite = bool(finite.all())
    if not all_finite:  # a diverged member: solve a harmless system, report NaN
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = torch.where(finite[..., None, None], a, eye)
        b = torch.where(finite[..., None], b, torch.zeros_like(b))
    # Cholesky, not LU: batched CPU LU (linalg.solve) runs MKL's getrf on several threads at
    # once and returned garbage pivots here (pytorch/pytorch#142815); batched Cholesky does not.
    with _one_thread(a.device):
        chol, info = torch.linalg.cholesky_ex(a)
        x = torch.cholesky_solve(b.unsqueeze(-1), chol).squeeze(-1)
    for i in (info > 0).nonzero().tolist():  # PD in exact arithmetic; rounding may break it
        i = tuple(i)
        x[i] = torch.linalg.lstsq(a[i], b[i].unsqueeze(-1)).solution.squeeze(-1)
    return x if all_finite else torch.where(finite[..., None], x, torch.full_like(x, float("nan")))


@contextlib.contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """CPU: one intra-op thread. MKL's threaded potrf on these small (<= ~260) matrices ran
    ~10x slower on 2 threads than on 1 (measured: 16 x 257^2, 0.28 s vs 0.02 s)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _diag_mean(a: torch.Tensor) -> torch.Tensor:
    return a.diagonal(dim1=-2, dim2=-1).mean(-1)


def mean_quadratic_form(
    mean: torch.Tensor, second_moment: torch.Tensor, eps: float = 1e-4
) -> torch.Tensor:
    """q = m^T (S + eps_abs I)^-1 m with eps_abs = eps * tr(S) / d; batched over leading dims.

    For S the second moment of the vectors whose mean is m, q lies in [0, 1).
    """
    x = _ridge_solve(second_moment, mean, eps * _diag_mean(second_moment))
    return (mean * x).sum(-1)


def natural_gradient(
    fisher: torch.Tensor, grad: torch.Tensor, damping: float = 1e-3
) -> torch.Tensor:
    """(F + lambda I)^-1 g with lambda = damping * tr(F) / n; batched over leading dims."""
    return _ridge_solve(fisher, grad, damping * _diag_mean(fisher))


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine along the last dim; NaN where either vector is zero."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def patch_rows(
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
    dilation: tuple[int, int] = (1, 1),
    rows: torch.Tensor | None = None,
    coords: torch.Tensor | None = None,
) -> torch.Tensor:
    """Chosen entries of ``F.unfold(x, ...)`` as [..., rows, coords], without unfolding it all.

    x is [..., B, C, H, W] (leading dims kept). ``rows`` index the B * L (image, output position)
    pairs in unfold's order (image-major, positions row-major); ``coords`` index the C * kh * kw
    patch entries in unfold's order, which is also that of ``conv.weight.flatten(1)``. None = all.
    """
    b, c, h, w = x.shape[-4:]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    x = F.pad(x, (pw, pw, ph, ph))
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if rows is None:
        rows = torch.arange(b * ho * wo, device=x.device)
    if coords is None:
        coords = torch.arange(c * kh * kw, device=x.device)
    image, pos = rows.div(ho * wo, rounding_mode="floor"), rows % (ho * wo)
    oy, ox = pos.div(wo, rounding_mode="floor"), pos % wo
    ch, off = coords.div(kh * kw, rounding_mode="floor"), coords % (kh * kw)
    ky, kx = off.div(kw, rounding_mode="floor"), off % kw
    yy = (oy * sh)[:, None] + (ky * dh)[None, :]
    xx = (ox * sw)[:, None] + (kx * dw)[None, :]
    return x[..., image[:, None], ch[None, :], yy, xx]


# ---------------------------------------------------------------------------- layers
@dataclass
class _Site:
    """One receiving layer: its module in every member (or the one stacked module)."""

    index: int  # 1-based: the layer fed by hidden layer ``index``
    modules: list[nn.Module]
    kind: str  # "stacked", "linear" or "conv"
    crop: tuple[int, int, int, int] | None  # a ZeroPad2d's (left, right, top, bottom) before it


def _weight_layers(module: nn.Module) -> list[tuple[nn.Module, tuple[int, int, int, int] | None]]:
    """Linear / conv layers in module order, each with the ZeroPad2d padding in front of it."""
    pads: dict[nn.Module, tuple[int, int, int, int]] = {}
    for m in module.modules():
        # _ConvLayer pads asymmetrically in a separate module; its zeros are not activations.
        pad, conv = getattr(m, "pad", None), getattr(m, "conv", None)
        if isinstance(pad, nn.ZeroPad2d) and isinstance(conv, nn.Conv2d):
            pads[conv] = tuple(int(p) for p in pad.padding)
    return [
        (m, pads.get(m))
        for m in module.modules()
        if isinstance(m, (StackedLinear, nn.Linear, nn.Conv2d))
    ]


def _kind(m: nn.Module) -> str:
    if isinstance(m, StackedLinear):
        return "stacked"
    if isinstance(m, nn.Linear):
        return "linear"
    if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise NotImplementedError(
            f"TheoryMonitor handles ungrouped, zero-padded convs with numeric padding: {m}"
        )
    return "conv"


def _receiving_sites(population: nn.Module, num_members: int) -> list[_Site]:
    members = population.member_nets()  # the Population interface (models/population.py)
    if members is not None:
        if len(members) != num_members:
            raise ValueError(f"population has {len(members)} members, not {num_members}")
        per_member = [_weight_layers(m) for m in members]
        if len({len(layers) for layers in per_member}) > 1:
            raise ValueError("all members need the same number of linear / conv layers")
        sites = []
        for n, column in enumerate(zip(*per_member)):
            kinds = {_kind(m) for m, _ in column}
            if len(kinds) > 1 or "stacked" in kinds:
                raise ValueError(f"members differ at weight layer {n + 1}: {kinds}")
            if n > 0:
                sites.append(_Site(n, [m for m, _ in column], kinds.pop(), column[0][1]))
        return sites
    layers = _weight_layers(population)
    if not all(isinstance(m, StackedLinear) for m, _ in layers):
        raise TypeError(
            "a population is a MemberList or a net of StackedLinear layers (StackedMLP)"
        )
    return [_Site(n, [m], "stacked", None) for n, (m, _) in enumerate(layers) if n > 0]


@dataclass
class _LayerData:
    """What one receiving layer saw, for all K members, statistics in float64."""

    mu_in: torch.Tensor  # [K, incoming units]
    z: torch.Tensor  # [K, R, Ds]: sampled rows (unit rows first), sampled coordinates
    delta: torch.Tensor  # [K, Ru, Js]: delta of the sampled units on the first Ru rows
    shift: torch.Tensor  # [K, J]: mu^T g_w,j, g = the mean-over-batch loss gradient, exact
    grad_b: torch.Tensor  # [K, J]: g_b,j (whether the layer has a bias or not)
    live: torch.Tensor  # [K, J]: whether unit j's delta is non-zero on some row


# ---------------------------------------------------------------------------- monitor
class TheoryMonitor:
    """Per-layer bias-shift and unit-natural-gradient diagnostics of a population.

    ``population``: a ``StackedMLP`` or a ``MemberList`` of nets whose weight layers are
    ``nn.Linear`` / ungrouped zero-padded ``nn.Conv2d``, K = ``num_members``.
    ``eps``: q's ridge, relative: eps * tr(S) / d is added to S's diagonal (S the (weighted)
    second moment of the d incoming coordinates). ``damping``: lambda = damping * tr(F_j) / (d+1)
    is added to F_j's diagonal.
    Subsampling, fixed per layer by ``seed`` (the same subsets for every member and every call
    with the same shapes, so a trajectory follows the same units): ``max_rows`` rows (examples,
    or (image, position) pairs) for q; the first ``max_unit_rows`` of those and ``max_units``
    receiving units (output channels) for q_delta and ng_cos; ``max_dim`` incoming coordinates
    (patch entries) for q, q_delta and ng_cos (ridge aside, q of a sub-vector is at most q of
    the whole). Cost of q_delta and ng_cos per layer and member, which dominates:
    2 * max_units * max_unit_rows * (max_dim + 1)^2 flops in float64. mu and the bias-shift
    metrics are exact: all rows, units and coordinates.
    """

    def __init__(
        self,
        population: nn.Module,
        num_members: int,
        *,
        eps: float = 1e-4,
        damping: float = 1e-3,
        max_rows: int = 4096,
        max_unit_rows: int = 512,
        max_units: int = 16,
        max_dim: int = 256,
        seed: int = 0,
    ) -> None:
        if min(max_rows, max_unit_rows, max_units, max_dim) < 1 or eps < 0 or damping < 0:
            raise ValueError("the max_* caps must be >= 1; eps and damping >= 0")
        self.population = population
        self.num_members = num_members
        self.eps, self.damping = float(eps), float(damping)
        self.max_rows, self.max_unit_rows = max_rows, max_unit_rows
        self.max_units, self.max_dim = max_units, max_dim
        self.seed = seed
        self._sites = _receiving_sites(population, num_members)
        self.num_layers = len(self._sites)

    def __bool__(self) -> bool:
        return bool(self._sites)

    def measure(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        loss_fn: LossFn,
        lr: float | Sequence[float] | None = None,
        *,
        shared: bool = True,
    ) -> dict[str, torch.Tensor]:
        """{metric: float64 tensor [K]} on the batch x (``shared``: [B, ...] fed to every member
        via ``forward_shared``; else [K, B, ...]). ``lr`` (one, or one per member) only adds
        ``bias_shift``. Leaves parameters, .grad, buffers, modes and the global RNG as they were.
        """
        pop = self.population
        modes = [(m, m.training) for m in pop.modules()]
        store: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, int]] = {}
        handles = [
            module.register_forward_hook(_capture(store, (site.index, k)))
            for site in self._sites
            for k, module in enumerate(site.modules)
        ]
        try:
            pop.eval()  # no dropout, BN on running statistics (and not updating them)
            with torch.enable_grad():
                out = pop.forward_shared(x) if shared else pop(x)
                losses = loss_fn(out, x, y)
                if losses.shape != out.shape[:2]:
                    raise ValueError(f"loss_fn must give [K, B] = {list(out.shape[:2])}")
                keys = sorted(store)
                outputs = [store[key][1] for key in keys]
                if any(store[key][1]._version != store[key][2] for key in keys):
                    raise RuntimeError("a layer's output was modified in place (inplace=True?)")
                # Examples are independent in eval mode: the gradient of the summed per-example
                # losses w.r.t. a layer's output is every example's own delta. No weight
                # gradients: the bias-shift proxy needs only mu^T z and delta (see _layer_data).
                grads = torch.autograd.grad(losses.sum(), outputs)
        finally:
            for handle in handles:
                handle.remove()
            for module, mode in modes:
                module.training = mode
        batch = out.shape[1]
        deltas = dict(zip(keys, grads))
        del grads, outputs, out, losses
        layers = []
        for site in self._sites:
            members = range(len(site.modules))
            inputs = [store.pop((site.index, k))[0] for k in members]
            delta = [deltas.pop((site.index, k)) for k in members]
            layers.append(self._layer_data(site, inputs, delta, batch))
        return self._metrics(layers, lr, x.device)

    # ------------------------------------------------------------------ per layer
    def _layer_data(
        self,
        site: _Site,
        inputs: list[torch.Tensor],
        deltas: list[torch.Tensor],
        batch: int,
    ) -> _LayerData:
        k = self.num_members
        f64 = torch.float64
        gen = torch.Generator().manual_seed(self.seed * _SEED_STRIDE + site.index)
        if site.kind == "stacked":
            z, delta = inputs[0], deltas[0]
            z = z.expand(k, *z.shape) if z.dim() == 2 else z  # a shared input
        else:
            z, delta = _stack(inputs), _stack(deltas)
        num_units = delta.shape[2]
        units = _subset(num_units, self.max_units, gen, z.device)
        if site.kind == "conv":
            conv = site.modules[0]
            geometry = dict(
                kernel_size=conv.kernel_size,
                stride=conv.stride,
                padding=conv.padding,
                dilation=conv.dilation,
            )
            left, right, top, bottom = site.crop or (0, 0, 0, 0)
            h, w = z.shape[-2:]
            mu_in = z[..., top : h - bottom, left : w - right].sum(dim=(1, 3, 4), dtype=f64)
            mu_in /= batch * (h - top - bottom) * (w - left - right)
            positions = delta.shape[-2] * delta.shape[-1]
            # unfold is linear: the patches summed over images are the patches of the sum.
            summed = F.unfold(z.sum(1, dtype=f64), **geometry)  # [K, D, L]
            mu_full = summed.sum(-1) / (batch * positions)
            rows, unit_rows = self._rows(batch * positions, gen, z.device)
            coords = _subset(mu_full.shape[1], self.max_dim, gen, z.device)
            z_rows = patch_rows(z, rows=rows, coords=coords, **geometry)
            d_rows = delta[:, :, units].flatten(3).transpose(2, 3).flatten(1, 2)
            d_rows = d_rows[:, rows[:unit_rows]]
            grad_b = delta.sum(dim=(1, 3, 4), dtype=f64)
            live = _nonzero(delta, (1, 3, 4))
            # mu^T g_w,j = sum over rows of (mu^T patch) delta_j / B; mu^T patch for every row
            # is a one-filter convolution with mu as the filter.
            shift = _conv_shift(z, delta, mu_full, conv)
        else:
            mu_in = z.sum(1, dtype=f64) / batch
            mu_full = mu_in
            rows, unit_rows = self._rows(batch, gen, z.device)
            coords = _subset(z.shape[2], self.max_dim, gen, z.device)
            z_rows = z[:, rows[:, None], coords[None, :]]
            d_rows = delta[:, rows[:unit_rows]][:, :, units]
            grad_b = delta.sum(1, dtype=f64)
            live = _nonzero(delta, (1,))
            shift = _linear_shift(z, delta, mu_full)
        return _LayerData(
            mu_in=mu_in,
            z=z_rows.to(f64),
            delta=d_rows.to(f64),
            shift=shift / batch,
            grad_b=grad_b / batch,
            live=live,
        )

    def _rows(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[torch.Tensor, int]:
        """Up to ``max_rows`` of n rows, the ``max_unit_rows`` unit rows first (each part sorted,
        for locality), and how many unit rows there are."""
        perm = torch.randperm(n, generator=gen)[: self.max_rows]
        u = min(self.max_unit_rows, len(perm))
        rows = torch.cat([perm[:u].sort().values, perm[u:].sort().values])
        return rows.to(device), u

    def _unit_stats(self, data: _LayerData) -> tuple[torch.Tensor, torch.Tensor]:
        """q_delta and ng_cos [K, Js] from the unit Fisher blocks of the sampled units."""
        delta = data.delta  # [K, R, Js]
        k, rows, units = delta.shape
        z = data.z[:, :rows]
        dim = z.shape[2]
        zt = torch.cat([z, z.new_ones(k, rows, 1)], dim=2)  # z~ = (z, 1)
        weights = delta.square().transpose(1, 2)[:, :, None, :]  # [K, Js, 1, R]
        # M_j = sum_i delta_ij^2 z~_i z~_i^T for every sampled unit j: [K, Js, d+1, d+1], a few
        # members at a time to keep the [members, Js, d+1, R] temporary under 64 MiB.
        step = max(1, (1 << 23) // (units * rows * (dim + 1)))
        m = zt.new_empty(k, units, dim + 1, dim + 1)
        for a in range(0, k, step):
            weighted = zt[a : a + step].transpose(1, 2)[:, None] * weights[a : a + step]
            torch.matmul(weighted, zt[a : a + step, None], out=m[a : a + step])
        total = m[..., dim, dim]  # sum_i delta_ij^2
        mu_w = m[..., :dim, dim] / total[..., None]
        s_w = m[..., :dim, :dim] / total[..., None, None]
        q = mean_quadratic_form(mu_w, s_w, self.eps)
        q_delta = torch.where(total > 0, q, torch.full_like(q, float("nan")))
        grad = delta.transpose(1, 2) @ zt / rows  # g_j = E[delta_j z~]: [K, Js, d+1]
        return q_delta, cosine(grad, natural_gradient(m / rows, grad, self.damping))

    def _metrics(
        self, layers: list[_LayerData], lr: float | Sequence[float] | None, device: torch.device
    ) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        per_unit: dict[str, list[torch.Tensor]] = {name: [] for name in UNIT_QUANTITIES}
        mu_abs, qs = [], []
        for n, data in enumerate(layers, start=1):
            moment = data.z.transpose(1, 2) @ data.z / data.z.shape[1]
            q = mean_quadratic_form(data.z.mean(1), moment, self.eps)
            q_delta, ng_cos = self._unit_stats(data)
            shift = data.shift.abs()
            # 0 / 0 for a unit whose delta is zero on every row (a dead ReLU): undefined, left
            # out of the medians like its q_delta and ng_cos, not counted as a ratio of 0.
            ratio = shift / (data.grad_b.abs() + _TINY)
            values = {
                "q_delta": q_delta,
                "bias_shift_ratio": torch.where(data.live, ratio, torch.nan),
                "bias_shift_per_lr": shift,
                "ng_cos": ng_cos,
            }
            out[f"theory/mu_abs_median/layer{n}"] = _median(data.mu_in.abs())
            out[f"theory/mu_abs_mean/layer{n}"] = data.mu_in.abs().mean(-1)
            out[f"theory/q/layer{n}"] = q
            for name, value in values.items():
                out[f"theory/{name}/layer{n}"] = _median(value)
                per_unit[name].append(value)
            mu_abs.append(data.mu_in.abs())
            qs.append(q)
        if layers:
            pooled_mu = torch.cat(mu_abs, dim=1)
            out["theory/mu_abs_median"] = _median(pooled_mu)
            out["theory/mu_abs_mean"] = pooled_mu.mean(-1)
            out["theory/q"] = _median(torch.stack(qs, dim=1))
            for name, values in per_unit.items():
                out[f"theory/{name}"] = _median(torch.cat(values, dim=1))
        if lr is not None and layers:
            rate = torch.as_tensor(lr, dtype=torch.float64, device=device)
            rate = rate.expand(self.num_members)
            for key in [k for k in out if k.startswith("theory/bias_shift_per_lr")]:
                out[key.replace("bias_shift_per_lr", "bias_shift")] = rate * out[key]
        return out


def _capture(store: dict, key: tuple[int, int]) -> Callable:
    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if key in store:
            raise RuntimeError(f"receiving layer {key[0]} ran twice in one forward pass")
        store[key] = (inputs[0].detach(), output, output._version)

    return hook


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    # One member: a view, not a copy of what may be a large batch of feature maps.
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


# Rows (images) per float64 chunk in the shift computations: bounds their float64 copies.
_CHUNK_ELEMENTS = 1 << 22


def _linear_shift(z: torch.Tensor, delta: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """sum_i (mu^T z_i) delta_ij for z [K, B, D], delta [K, B, J], mu [K, D] -> [K, J]."""
    step = max(1, _CHUNK_ELEMENTS // z[0, 0].numel())
    total = mu.new_zeros(delta.shape[0], delta.shape[2])
    for a in range(0, z.shape[1], step):
        proj = (z[:, a : a + step].to(mu.dtype) @ mu[:, :, None]).squeeze(-1)  # [K, b]
        total += torch.einsum("kb,kbj->kj", proj, delta[:, a : a + step].to(mu.dtype))
    return total


def _conv_shift(
    z: torch.Tensor, delta: torch.Tensor, mu: torch.Tensor, conv: nn.Conv2d
) -> torch.Tensor:
    """sum over (image, position) of (mu^T patch) delta_j for conv inputs z [K, B, C, H, W],
    deltas [K, B, J, Ho, Wo] and mean patches mu [K, C*kh*kw] -> [K, J]."""
    k, _, c = z.shape[:3]
    step = max(1, _CHUNK_ELEMENTS // z[0, 0].numel())
    filters = mu.view(k, c, *conv.kernel_size)  # unfold's patch order is the weight's
    total = mu.new_zeros(k, delta.shape[2])
    for a in range(0, z.shape[1], step):
        part = z[:, a : a + step].to(mu.dtype)
        b = part.shape[1]
        # All members at once: member k's maps are group k, filtered by its own mean patch.
        proj = F.conv2d(
            part.transpose(0, 1).flatten(1, 2),
            filters,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=k,
        )  # [b, K, Ho, Wo]
        total += torch.einsum("bkhw,kbjhw->kj", proj, delta[:, a : a + b].to(mu.dtype))
    return total


def _nonzero(delta: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Whether delta is non-zero anywhere along ``dims`` (two reductions, no copy of delta);
    NaN counts as non-zero."""
    return (delta.amax(dim=dims) != 0) | (delta.amin(dim=dims) != 0)


def _subset(n: int, cap: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """All of range(n), or a sorted random ``cap`` of them drawn from ``gen``."""
    if n <= cap:
        return torch.arange(n, device=device)
    return torch.randperm(n, generator=gen)[:cap].sort().values.to(device)


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median over the last dim, ignoring NaN (undefined units), interpolated like numpy's."""
    return torch.nanquantile(values, 0.5, dim=-1)


def per_example_loss(task: Classification | Reconstruction) -> LossFn:
    """The task's training loss per member and example, [K, B] (``task.loss`` is its batch
    mean); pass it to ``TheoryMonitor.measure``."""
    return task.per_example
