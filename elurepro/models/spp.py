"""The 15-layer ImageNet net with spatial pyramid pooling (docs/protocol.md §5.5, U23, U24)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from elurepro.errors import ConfigError
from elurepro.models.init import normal_fan_
from elurepro.monitor import Probe


class SpatialPyramidPool(nn.Module):
    """Max pooling into an l×l grid for every level l; output [B, C * sum(l*l)].

    Bins follow ``AdaptiveMaxPool2d``: bin i of n on an a-wide map spans
    [floor(i*a/n), ceil((i+1)*a/n)). Where n divides a this is exactly SPP-net's rule (window
    ceil(a/n), stride floor(a/n)). Where it does not, SPP-net's rule gives the wrong bin count
    (a 7×7 map at level 4: window 2, stride 1, so 6×6 bins), so the adaptive bins are our reading.
    Features are ordered level by level, each flattened channel-major.
    """

    def __init__(self, levels: Sequence[int] = (4, 2, 1)) -> None:
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if not levels or any(level < 1 for level in levels):
            raise ConfigError(f"SPP levels must be positive integers, got {levels}")
        self.levels = levels

    def out_features(self, channels: int) -> int:
        """Length of the output vector for a map with ``channels`` channels."""
        return channels * sum(level * level for level in self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, level).flatten(1) for level in self.levels], 1)

    def extra_repr(self) -> str:
        return f"levels={self.levels}"


class SPPNet(nn.Module):
    """conv1 → pool → conv stacks (each followed by 2×2/2 max pooling) → SPP → FC → FC → classes.

    ``conv1`` is (channels, kernel, stride, pad); each of ``conv_stacks`` is (layers, channels,
    kernel) with "same" padding. The activation follows every conv and both hidden FC layers, a
    ``Probe`` follows every activation, and dropout follows the probes of the hidden FC layers.
    ``pool_before_spp=False`` drops the pooling after the last stack (SPP replaces it).
    ``input_size`` is only used to check at construction that every layer gets a map big enough.
    Every weight is N(0, init_gain/fan_in) (2: He normal), except the class-score layer's, N(0,
    classifier_gain/fan_in), when ``classifier_gain`` is set.
    """

    def __init__(
        self,
        activation: Callable[[], nn.Module],
        conv_stacks: Sequence[Sequence[int]] = ((3, 512, 3), (5, 768, 3), (3, 1024, 3)),
        conv1: Sequence[int] = (96, 6, 2, 2),
        spp_levels: Sequence[int] = (4, 2, 1),
        pool_before_spp: bool = True,
        fc: Sequence[int] = (4096, 4096),
        fc_dropout: float = 0.5,
        num_classes: int = 1000,
        in_channels: int = 3,
        input_size: int = 224,
        init_gain: float = 2.0,
        classifier_gain: float | None = None,
    ) -> None:
        super().__init__()
        if not init_gain > 0:
            raise ConfigError(f"init_gain={init_gain!r}: expected a number > 0 (U3)")
        if classifier_gain is not None and not classifier_gain > 0:
            raise ConfigError(f"classifier_gain={classifier_gain!r}: expected a number > 0 or null")
        if not callable(activation):
            raise ConfigError("SPPNet needs activation= a zero-argument constructor of a module")
        conv1 = _ints("conv1", conv1, 4, "(channels, kernel, stride, pad)")
        stacks = [
            _ints(f"conv_stacks[{i}]", s, 3, "(layers, channels, kernel)")
            for i, s in enumerate(conv_stacks)
        ]
        if not stacks:
            raise ConfigError("conv_stacks needs at least one (layers, channels, kernel) stack")
        for i, (layers, channels, kernel) in enumerate(stacks):
            if layers < 1 or channels < 1 or kernel < 1 or kernel % 2 == 0:
                raise ConfigError(
                    f"conv_stacks[{i}] = {(layers, channels, kernel)}: need layers >= 1, "
                    "channels >= 1 and an odd kernel (so 'same' padding keeps the map size)"
                )
        if min(conv1[:3]) < 1 or conv1[3] < 0:
            raise ConfigError(
                f"conv1 = {tuple(conv1)}: need channels, kernel, stride >= 1, pad >= 0"
            )
        if not 0.0 <= fc_dropout < 1.0:
            raise ConfigError(f"fc_dropout must be in [0, 1), got {fc_dropout}")
        if num_classes < 1 or in_channels < 1 or any(int(w) < 1 for w in fc):
            raise ConfigError("num_classes, in_channels and the fc widths must be positive")

        self.spp = SpatialPyramidPool(spp_levels)
        self.map_size = _check_shapes(input_size, conv1, stacks, self.spp.levels, pool_before_spp)

        features: OrderedDict[str, nn.Module] = OrderedDict()
        channels, kernel, stride, pad = conv1
        features["stack1"] = _stack(
            [nn.Conv2d(in_channels, channels, kernel, stride, pad)], activation
        )
        features["pool1"] = nn.MaxPool2d(2, 2)
        for i, (layers, width, kernel) in enumerate(stacks, start=2):
            convs = []
            for _ in range(layers):
                convs.append(nn.Conv2d(channels, width, kernel, 1, kernel // 2))
                channels = width
            features[f"stack{i}"] = _stack(convs, activation)
            if i < len(stacks) + 1 or pool_before_spp:
                features[f"pool{i}"] = nn.MaxPool2d(2, 2)
        self.features = nn.Sequential(features)

        head: OrderedDict[str, nn.Module] = OrderedDict()
        width = self.spp.out_features(channels)
        for j, hidden in enumerate(fc, start=1):
            head[f"fc{j}"] = nn.Linear(width, int(hidden))
            head[f"act{j}"] = activation()
            head[f"probe{j}"] = Probe()
            head[f"drop{j}"] = nn.Dropout(fc_dropout)
            width = int(hidden)
        head["out"] = nn.Linear(width, num_classes)  # no activation: softmax is in the loss (U5)
        self.classifier = nn.Sequential(head)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                normal_fan_(m, init_gain)
        if classifier_gain is not None:  # U29: the class-score layer's own scale
            normal_fan_(head["out"], classifier_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.spp(self.features(x)))


def _ints(name: str, values: Sequence[int], n: int, meaning: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in values)
    if len(values) != n:
        raise ConfigError(f"{name} must have {n} values {meaning}, got {values}")
    return values


def _stack(convs: list[nn.Conv2d], activation: Callable[[], nn.Module]) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for k, conv in enumerate(convs, start=1):
        layers[f"conv{k}"] = conv
        layers[f"act{k}"] = activation()
        layers[f"probe{k}"] = Probe()
    return nn.Sequential(layers)


def _check_shapes(
    size: int,
    conv1: tuple[int, ...],
    stacks: list[tuple[int, ...]],
    levels: tuple[int, ...],
    pool_before_spp: bool,
) -> int:
    """Side of the map that reaches SPP; ConfigError naming the first layer that gets too little."""
    hint = (
        "use a larger input_size, a smaller conv1 stride, pool_before_spp=False, "
        "fewer conv stacks or smaller spp_levels"
    )

    def shrink(layer: str, new: int) -> int:
        if new < 1:
            raise ConfigError(
                f"SPPNet at input_size {size}: layer {layer!r} gets a {side}x{side} map and "
                f"would output nothing; {hint}"
            )
        return new

    _, kernel, stride, pad = conv1
    side = size
    side = shrink("stack1.conv1", (side + 2 * pad - kernel) // stride + 1)
    side = shrink("pool1", side // 2)
    for i in range(2, len(stacks) + 2):
        if i < len(stacks) + 1 or pool_before_spp:
            side = shrink(f"pool{i}", side // 2)
    if side < max(levels):
        raise ConfigError(
            f"SPPNet at input_size {size}: layer 'spp' gets a {side}x{side} map but its largest "
            f"pyramid level needs at least {max(levels)}x{max(levels)}; {hint}"
        )
    return side


def scale_widths(
    conv1: Sequence[int], conv_stacks: Sequence[Sequence[int]], fc: Sequence[int], width: float
) -> tuple[tuple[int, ...], list[tuple[int, ...]], tuple[int, ...]]:
    """(conv1, conv_stacks, fc) with every channel count and FC width times ``width`` (at least 1).

    Layer counts, kernels, strides and padding stay: a narrow net has the paper's architecture,
    for smoke runs on a CPU (the cost falls about as width squared).
    """
    if not width > 0:
        raise ConfigError(f"budget.width must be > 0, got {width}")

    def scaled(channels: int) -> int:
        return max(1, round(int(channels) * width))

    c1 = _ints("conv1", conv1, 4, "(channels, kernel, stride, pad)")
    stacks = [
        _ints(f"conv_stacks[{i}]", s, 3, "(layers, channels, kernel)")
        for i, s in enumerate(conv_stacks)
    ]
    return (
        (scaled(c1[0]), *c1[1:]),
        [(layers, scaled(channels), kernel) for layers, channels, kernel in stacks],
        tuple(scaled(w) for w in fc),
    )


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (works on the meta device too)."""
    return sum(p.numel() for p in model.parameters())


def forward_macs(model: SPPNet, input_size: int) -> int:
    """Multiply-accumulates of the conv and FC layers per image (docs/protocol.md §8 convention)."""
    macs, side = 0, input_size
    for m in model.features.modules():
        if isinstance(m, nn.Conv2d):
            side = (side + 2 * m.padding[0] - m.kernel_size[0]) // m.stride[0] + 1
            macs += side * side * m.out_channels * m.in_channels * math.prod(m.kernel_size)
        elif isinstance(m, nn.MaxPool2d):
            side //= 2
    macs += sum(
        m.in_features * m.out_features
        for m in model.classifier.modules()
        if isinstance(m, nn.Linear)
    )
    return macs
