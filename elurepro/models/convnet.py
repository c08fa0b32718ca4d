"""The paper's CIFAR CNNs, built from its stack notation (docs/protocol.md §4, §5.3, §5.4)

The nets themselves are data: ``configs/model/cnn11.yaml`` and ``cnn18.yaml`` hold their stacks
and dropout rates, and nothing here repeats them..

A stack is a list of layer groups "n x c x k" (n conv layers, c channels, k x k kernels) and is
followed by 2x2/2 max-pooling and dropout. The last layer of the last stack gives the class
scores. How 2x2 convs are padded and how pooling rounds is not in the paper (U2); conventions:

- "A" (default): odd k "same"; even k symmetric pad k/2 (a 2x2 conv grows the map by 1);
  ceil-mode pooling (Caffe style); pooling skipped on a 1x1 map.
- "B": as A, floor-mode pooling.
- "C": even k "same" with asymmetric zero pad (k/2 - 1 before, k/2 after); floor pooling.
- "V": even k unpadded, ceil pooling: the reading docs/protocol.md §4 rules out (the 18-layer net
  shrinks to nothing); kept so that the shape check can show why.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from elurepro.activations import ELU, SReLU
from elurepro.errors import ConfigError
from elurepro.models.init import normal_fan_
from elurepro.monitor import Probe

# convention -> (padding of even kernels, ceil-mode pooling)
CONVENTIONS: dict[str, tuple[str, bool]] = {
    "A": ("grow", True),
    "B": ("grow", False),
    "C": ("same", False),
    "V": ("none", True),
}

# U3: which fan scales the initial weights; U28: how a class-score map larger than 1x1 is reduced.
INIT_FANS = ("fan_in", "fan_out")
SCORE_POOLS = ("max", "avg")

_GROUP = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_FORM = "'n x channels x kernel', e.g. '1x192x5' (x, X or ×)"


@dataclass(frozen=True)
class LayerSpec:
    """n consecutive k x k conv layers with ``channels`` outputs each."""

    n: int
    channels: int
    kernel: int

    def __str__(self) -> str:
        return f"{self.n}x{self.channels}x{self.kernel}"


@dataclass(frozen=True)
class LayerShape:
    """One row of the shape table: a conv layer, a stack's pooling, or the final spatial max."""

    stack: int  # 1-based
    layer: int  # 1-based within the stack; 0 for pooling rows
    op: str  # "conv", "maxpool", "skip pool" or "global max"
    kernel: int
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    padding: tuple[int, int]  # zeros before and after, on each spatial axis
    params: int  # conv weights and bias (BN not included)
    macs: int  # multiply-accumulates per image


def parse_stack(spec: str | Sequence[str]) -> list[LayerSpec]:
    """Parse one stack: "1x192x5", "1x192x1, 1x240x3" or ["1x192x1", "1x240x3"]."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    if not parts:
        raise ConfigError(f"empty stack {spec!r}; expected layer groups of the form {_FORM}")
    groups = []
    for part in parts:
        match = _GROUP.match(part) if isinstance(part, str) else None
        if match is None:
            raise ConfigError(f"malformed layer group {part!r} in stack {spec!r}; expected {_FORM}")
        n, channels, kernel = (int(v) for v in match.groups())
        if min(n, channels, kernel) < 1:
            raise ConfigError(f"layer group {part!r}: n, channels and kernel must all be >= 1")
        groups.append(LayerSpec(n, channels, kernel))
    return groups


def with_classes(stacks: Sequence[str | Sequence[str]], num_classes: int) -> list[list[str]]:
    """The stacks with the class-score layer (the very last layer) set to ``num_classes``."""
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    parsed = _parse_stacks(stacks)
    out = [[str(g) for g in stack] for stack in parsed]
    last = parsed[-1][-1]
    tail = [str(LayerSpec(1, num_classes, last.kernel))]
    if last.n > 1:
        tail.insert(0, str(LayerSpec(last.n - 1, last.channels, last.kernel)))
    out[-1] = out[-1][:-1] + tail
    return out


def layer_shapes(
    stacks: Sequence[str | Sequence[str]],
    in_channels: int,
    input_size: int,
    convention: str = "A",
) -> list[LayerShape]:
    """The per-layer shape table; ConfigError naming the layer if a map would vanish."""
    even_padding, ceil_pool = _convention(convention)
    parsed = _parse_stacks(stacks)
    if in_channels < 1 or input_size < 1:
        raise ConfigError(
            f"in_channels and input_size must be >= 1, got {in_channels} and {input_size}"
        )
    rows: list[LayerShape] = []
    channels, size = in_channels, input_size
    for s, stack in enumerate(parsed, start=1):
        kernels = [(g.channels, g.kernel) for g in stack for _ in range(g.n)]
        for i, (out_channels, k) in enumerate(kernels, start=1):
            before, after = _padding(k, even_padding)
            out_size = size + before + after - k + 1
            if out_size < 1:
                raise ConfigError(
                    f"stack {s}, layer {i} ({k}x{k} conv, {out_channels} ch): map would be "
                    f"{out_size}x{out_size} (input {size}x{size}, padding {before}/{after}) "
                    f"under convention {convention!r}; use a padding convention that keeps the "
                    "map (A, B or C), a larger input_size, or fewer layers"
                )
            rows.append(
                LayerShape(
                    stack=s,
                    layer=i,
                    op="conv",
                    kernel=k,
                    in_channels=channels,
                    out_channels=out_channels,
                    in_size=size,
                    out_size=out_size,
                    padding=(before, after),
                    params=out_channels * channels * k * k + out_channels,
                    macs=out_size * out_size * out_channels * channels * k * k,
                )
            )
            channels, size = out_channels, out_size
        if size == 1:  # pooling a 1x1 map would change nothing (A) or fail
            rows.append(_pool_row(s, "skip pool", 2, channels, 1, 1))
        else:
            pooled = math.ceil(size / 2) if ceil_pool else size // 2
            rows.append(_pool_row(s, "maxpool", 2, channels, size, pooled))
            size = pooled
    if size > 1:
        rows.append(_pool_row(len(parsed), "global max", size, channels, size, 1))
    return rows


def _pool_row(stack: int, op: str, kernel: int, channels: int, size: int, out: int) -> LayerShape:
    return LayerShape(stack, 0, op, kernel, channels, channels, size, out, (0, 0), 0, 0)


def format_layer_table(rows: Sequence[LayerShape]) -> str:
    """A plain-text table of ``layer_shapes`` output, with totals."""
    lines = [
        f"{'stack':>5} {'layer':>5}  {'op':<16} {'channels':>11} {'map':>9} "
        f"{'params':>11} {'MACs':>13}"
    ]
    for r in rows:
        op = f"{r.kernel}x{r.kernel} conv" if r.op == "conv" else r.op
        if r.op == "conv" and r.padding[0] != r.padding[1]:
            op += f" pad {r.padding[0]}/{r.padding[1]}"
        elif r.op == "conv":
            op += f" pad {r.padding[0]}"
        layer = str(r.layer) if r.layer else ""
        lines.append(
            f"{r.stack:>5} {layer:>5}  {op:<16} {f'{r.in_channels}->{r.out_channels}':>11} "
            f"{f'{r.in_size}->{r.out_size}':>9} {r.params:>11,} {r.macs:>13,}"
        )
    lines.append(
        f"{'total':>11}  {'':<16} {'':>11} {'':>9} {sum(r.params for r in rows):>11,} "
        f"{sum(r.macs for r in rows):>13,}"
    )
    return "\n".join(lines)


class _Dropout(nn.Dropout):
    """Inverted dropout that costs nothing at rate 0 (most layers, most of the time).

    Masks come from torch's global RNG, or, once ``generator`` is set, from that generator as
    ``dropout_mask`` draws them: the mask source a stacked population gives each member, so
    that a member draws the same masks alone and stacked (``stacked_cnn.py``).
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        if self.generator is None:
            return super().forward(x)
        return x * dropout_mask(x.shape, self.p, self.generator, x.dtype, x.device)


def dropout_mask(
    shape: Sequence[int],
    p: float,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep-mask / (1 - p) as F.dropout forms it, drawn as one contiguous [B, C, H, W] tensor
    (the draw order fixes which bits land where; ``out``, if given, must be contiguous)."""
    mask = torch.empty(shape, dtype=dtype, device=device) if out is None else out
    return mask.bernoulli_(1.0 - p, generator=generator).div_(1.0 - p)


class _ConvLayer(nn.Module):
    """[pad ->] conv -> [BN ->] activation -> Probe -> dropout; a bare conv for class scores.

    Every layer has the same child names whatever the variant, so BN and non-BN models share
    state_dict keys for their conv weights.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        padding: tuple[int, int],
        activation: Callable[[], nn.Module] | None,
        batchnorm: bool,
    ) -> None:
        super().__init__()
        before, after = padding
        symmetric = before == after
        self.pad = nn.Identity() if symmetric else nn.ZeroPad2d((before, after, before, after))
        # Created without the default init, which He init replaces anyway (and which would
        # spend random numbers for nothing).
        self.conv = nn.utils.skip_init(
            nn.Conv2d, in_channels, out_channels, kernel, padding=before if symmetric else 0
        )
        hidden = activation is not None
        self.bn = nn.BatchNorm2d(out_channels) if hidden and batchnorm else nn.Identity()
        self.act = activation() if hidden else nn.Identity()
        self.probe = Probe() if hidden else nn.Identity()
        self.drop = _Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.probe(self.act(self.bn(self.conv(self.pad(x))))))


def non_decreasing(act: nn.Module) -> bool:
    """Whether the unit is non-decreasing, so that max-pooling commutes with it exactly."""
    kind = type(act)
    if kind is nn.LeakyReLU:
        return act.negative_slope >= 0
    if kind in (nn.ELU, ELU, nn.CELU):
        return act.alpha >= 0
    return kind in (nn.ReLU, nn.SELU, SReLU)


class _Stack(nn.Module):
    def __init__(self, layers: list[_ConvLayer], pool: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.pool = pool
        self.drop = _Dropout(0.0)
        last = layers[-1]
        # max(f(a), f(b)) = f(max(a, b)) for a non-decreasing f: the stack's last unit can run
        # on the pooled map, a quarter of the values (its layer has no dropout of its own).
        self.pool_first = isinstance(pool, nn.MaxPool2d) and non_decreasing(last.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *head, last = self.layers
        for layer in head:
            x = layer(x)
        # Whoever watches the unpooled activations (the monitors) or the pooled ones gets them.
        observed = any(m._forward_hooks or m._forward_pre_hooks for m in (last.probe, self.pool))
        if self.pool_first and not observed:
            return self.drop(last.act(self.pool(last.bn(last.conv(last.pad(x))))))
        return self.drop(self.pool(last(x)))


class StackConvNet(nn.Module):
    """A CNN of conv stacks, each followed by 2x2/2 max-pooling and dropout (U6: after pool).

    Output: class scores [B, num_classes] (no softmax), from the last layer, which has no
    activation and no BN (U5, U8). He normal init with zero biases (U3), drawn from torch's
    global RNG in layer order, so one seed gives the same conv weights for every activation and
    with or without BN.
    """

    def __init__(
        self,
        stacks: Sequence[str | Sequence[str]],
        in_channels: int,
        input_size: int,
        activation: Callable[[], nn.Module],
        dropout: Sequence[float],
        convention: str = "A",
        batchnorm: bool = False,
        dropout_all_layers: bool = False,
        init_fan: str = "fan_in",
        init_gain: float = 2.0,
        score_pool: str = "max",
    ) -> None:
        super().__init__()
        if init_fan not in INIT_FANS:
            raise ConfigError(f"init_fan={init_fan!r}: use one of {', '.join(INIT_FANS)} (U3)")
        if not init_gain > 0:
            raise ConfigError(f"init_gain={init_gain!r}: expected a number > 0 (U3)")
        if score_pool not in SCORE_POOLS:
            raise ConfigError(
                f"score_pool={score_pool!r}: use one of {', '.join(SCORE_POOLS)} (U28)"
            )
        self.init_fan, self.init_gain, self.score_pool = init_fan, float(init_gain), score_pool
        parsed = _parse_stacks(stacks)
        self.shapes = layer_shapes(parsed, in_channels, input_size, convention)
        self.stack_specs = [[str(g) for g in stack] for stack in parsed]
        self.in_channels = in_channels
        self.input_size = input_size
        self.convention = convention
        self.num_classes = parsed[-1][-1].channels
        _, ceil_pool = _convention(convention)

        conv_rows = [r for r in self.shapes if r.op == "conv"]
        num_convs = len(conv_rows)
        built: list[_Stack] = []
        seen = 0
        for s in range(1, len(parsed) + 1):
            layers = []
            for r in (r for r in conv_rows if r.stack == s):
                seen += 1
                is_scores = seen == num_convs
                layers.append(
                    _ConvLayer(
                        r.in_channels,
                        r.out_channels,
                        r.kernel,
                        r.padding,
                        None if is_scores else activation,
                        batchnorm,
                    )
                )
            pool_row = next(r for r in self.shapes if r.stack == s and r.op != "conv")
            pool: nn.Module = nn.Identity()
            if pool_row.op == "maxpool" and s == len(parsed) and score_pool == "avg":
                # The class-score map itself (the 18-layer net's 2x2 under A): U28.
                pool = nn.AvgPool2d(2, 2, ceil_mode=ceil_pool)
            elif pool_row.op == "maxpool":
                pool = nn.MaxPool2d(2, 2, ceil_mode=ceil_pool)
            built.append(_Stack(layers, pool))
        self.stacks = nn.ModuleList(built)
        # The paper's nets end at 1x1 under A, B and C; other stacks may end larger, and the
        # class score is then the spatial max (or mean, U28) of the class-score map.
        self.head: nn.Module = nn.Identity()
        if self.shapes[-1].op == "global max":
            big = score_pool == "max"
            self.head = nn.AdaptiveMaxPool2d(1) if big else nn.AdaptiveAvgPool2d(1)

        self.set_dropout(dropout, dropout_all_layers)
        self._init_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_channels, self.input_size, self.input_size)
        if tuple(x.shape[-3:]) != expected:
            raise ConfigError(
                f"StackConvNet built for inputs [B, {expected[0]}, {expected[1]}, {expected[2]}]"
                f" got {list(x.shape)}; set in_channels / input_size to match the data"
            )
        for stack in self.stacks:
            x = stack(x)
        return self.head(x).flatten(1)

    @property
    def dropout_rates(self) -> list[float]:
        return [float(stack.drop.p) for stack in self.stacks]

    def set_dropout(self, rates: Sequence[float], all_layers: bool) -> None:
        """Set per-stack rates, after the stack's pooling; with ``all_layers`` after every
        layer of the stack as well (the fine-tuning phases). Weights are untouched."""
        rates = [float(r) for r in rates]
        if len(rates) != len(self.stacks):
            raise ConfigError(
                f"{len(rates)} dropout rates for {len(self.stacks)} stacks; give one per stack"
            )
        bad = [r for r in rates if not 0.0 <= r < 1.0]
        if bad:
            raise ConfigError(f"dropout rates must be in [0, 1), got {bad}")
        for stack, rate in zip(self.stacks, rates, strict=True):
            stack.drop.p = rate
            # The stack's last layer is covered by the dropout after pooling.
            for layer in stack.layers[:-1]:
                layer.drop.p = rate if all_layers else 0.0
        self.dropout_all_layers = bool(all_layers)

    def use_dropout_generator(self, generator: torch.Generator | None) -> None:
        """Draw every dropout mask from ``generator`` (its owner seeds it, e.g. per step from
        (seed, step)) instead of the global RNG; None restores the global RNG."""
        for module in self.modules():
            if isinstance(module, _Dropout):
                module.generator = generator

    def describe(self) -> str:
        """The per-layer shape table (see ``layer_shapes``) with parameter and MAC totals."""
        return format_layer_table(self.shapes)

    def _init_weights(self) -> None:
        # N(0, gain / fan): He is (fan_in, 2); the one public reimplementation uses (fan_out, 1).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                normal_fan_(module, self.init_gain, self.init_fan)


def _parse_stacks(stacks: Sequence[str | Sequence[str]]) -> list[list[LayerSpec]]:
    if isinstance(stacks, str) or not stacks:
        raise ConfigError(
            f"stacks must be a non-empty list of stacks (each a string or a list of strings "
            f"of the form {_FORM}), got {stacks!r}"
        )
    return [
        list(stack) if stack and isinstance(stack[0], LayerSpec) else parse_stack(stack)
        for stack in stacks
    ]


def _convention(convention: str) -> tuple[str, bool]:
    if convention not in CONVENTIONS:
        raise ConfigError(
            f"unknown padding/pooling convention {convention!r}; use one of "
            f"{', '.join(CONVENTIONS)} (docs/protocol.md §4)"
        )
    return CONVENTIONS[convention]


def _padding(kernel: int, even_padding: str) -> tuple[int, int]:
    if kernel % 2 == 1:
        return (kernel - 1) // 2, (kernel - 1) // 2
    if even_padding == "grow":
        return kernel // 2, kernel // 2
    if even_padding == "same":
        return kernel // 2 - 1, kernel // 2
    return 0, 0
