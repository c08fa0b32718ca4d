"""The ImageNet SPP net (docs/protocol.md §5.5): pyramid pooling, shapes, parameter count, init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elurepro.activations import activation_factory
from elurepro.errors import ConfigError
from elurepro.models.spp import SpatialPyramidPool, SPPNet, count_parameters, forward_macs
from elurepro.monitor import Probe

SMALL = {"conv_stacks": [(1, 8, 3), (2, 8, 3), (1, 16, 3)], "conv1": (8, 6, 2, 2), "fc": (32, 32)}


@pytest.mark.parametrize("side", [5, 7, 13])
@pytest.mark.parametrize("channels", [1, 3, 8])
def test_spp_output_size(side: int, channels: int) -> None:
    levels = (4, 2, 1)
    out = SpatialPyramidPool(levels)(torch.randn(2, channels, side, side))
    assert out.shape == (2, channels * (16 + 4 + 1))
    assert SpatialPyramidPool(levels).out_features(channels) == channels * 21


def test_spp_equals_plain_max_pooling_when_the_map_divides() -> None:
    x = torch.randn(2, 3, 8, 8)
    out = SpatialPyramidPool((4, 2, 1))(x)
    # SPP-net's rule on an 8x8 map: window = stride = 8 / level.
    expected = torch.cat([F.max_pool2d(x, 8 // n).flatten(1) for n in (4, 2, 1)], dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_spp_bins_on_a_map_that_does_not_divide() -> None:
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 7)).astype(np.float32)
    out = SpatialPyramidPool((4,))(torch.from_numpy(x)).numpy().reshape(2, 4, 4)
    for i in range(4):
        for j in range(4):
            rows = slice(math.floor(i * 7 / 4), math.ceil((i + 1) * 7 / 4))
            cols = slice(math.floor(j * 7 / 4), math.ceil((j + 1) * 7 / 4))
            np.testing.assert_array_equal(out[:, i, j], x[0, :, rows, cols].max(axis=(1, 2)))


def test_spp_rejects_bad_levels() -> None:
    with pytest.raises(ConfigError, match="levels"):
        SpatialPyramidPool((4, 0))


@pytest.mark.parametrize("size", [224, 180])
def test_small_sppnet_output_shape(size: int) -> None:
    torch.manual_seed(0)
    net = SPPNet(activation=activation_factory("elu"), num_classes=10, input_size=size, **SMALL)
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_default_parameter_count_matches_the_layer_list() -> None:
    with torch.device("meta"):
        net = SPPNet(activation=activation_factory("relu"))
    # Independent count: docs/protocol.md §5.5 layers with U23/U24 (7x7 map into a {4,2,1} pyramid).
    conv_layers = [(3, 96, 6)]
    previous = 96
    for layers, width in [(3, 512), (5, 768), (3, 1024)]:
        for _ in range(layers):
            conv_layers.append((previous, width, 3))
            previous = width
    conv = sum(cin * cout * k * k + cout for cin, cout, k in conv_layers)
    fc_layers = [(1024 * 21, 4096), (4096, 4096), (4096, 1000)]
    fc = sum(fin * fout + fout for fin, fout in fc_layers)
    assert count_parameters(net) == conv + fc
    assert count_parameters(net.features) == conv
    assert round(conv / 1e6) == 56 and round(fc / 1e6) == 109 and round((conv + fc) / 1e6) == 165
    assert len(conv_layers) + len(fc_layers) == 15
    assert net.map_size == 7


def test_default_forward_cost_matches_paper_arithmetic() -> None:
    with torch.device("meta"):
        net = SPPNet(activation=activation_factory("elu"))
    # docs/protocol.md §8: 40.9 G MAC per 224x224 image with conv1 stride 2.
    assert forward_macs(net, 224) == pytest.approx(40.9e9, rel=0.005)


def test_probe_after_every_hidden_activation() -> None:
    with torch.device("meta"):
        net = SPPNet(activation=activation_factory("elu"))
    modules = list(net.modules())
    probes = [i for i, m in enumerate(modules) if isinstance(m, Probe)]
    assert len(probes) == 14  # 12 convs + 2 hidden FC layers
    assert all(isinstance(modules[i - 1], nn.ELU) for i in probes)
    assert sum(isinstance(m, nn.ELU) for m in modules) == 14
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in modules) == 2
    assert isinstance(modules[-1], nn.Linear) and modules[-1].out_features == 1000


def test_pooling_layout() -> None:
    with torch.device("meta"):
        pooled = SPPNet(activation=activation_factory("relu"), **SMALL)
        unpooled = SPPNet(activation=activation_factory("relu"), pool_before_spp=False, **SMALL)

    def pools(net: nn.Module) -> int:
        return sum(isinstance(m, nn.MaxPool2d) for m in net.modules())

    assert pools(pooled) == 4 and pools(unpooled) == 3
    assert pooled.map_size == 7 and unpooled.map_size == 14


def test_he_init_and_zero_biases() -> None:
    torch.manual_seed(0)
    net = SPPNet(activation=activation_factory("relu"), num_classes=10, **SMALL)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.15)
            assert torch.count_nonzero(m.bias) == 0
    fc1 = net.classifier.fc1.weight
    assert fc1.std().item() == pytest.approx(math.sqrt(2 / fc1.shape[1]), rel=0.03)


def test_classifier_gain_sets_only_the_class_score_layer_and_starts_nearer_ln_c() -> None:
    torch.manual_seed(0)
    wide = {**SMALL, "fc": (512, 512)}
    he = SPPNet(activation=activation_factory("elu"), num_classes=10, input_size=128, **wide)
    torch.manual_seed(0)
    net = SPPNet(
        activation=activation_factory("elu"),
        num_classes=10,
        input_size=128,
        classifier_gain=0.4,
        **wide,
    )
    assert net.classifier.out.weight.std().item() == pytest.approx(math.sqrt(0.4 / 512), rel=0.05)
    for (name, a), b in zip(he.state_dict().items(), net.state_dict().values(), strict=True):
        assert name == "classifier.out.weight" or torch.equal(a, b), name
    x, y = torch.randn(32, 3, 128, 128), torch.randint(0, 10, (32,))
    he.eval(), net.eval()
    with torch.no_grad():
        start, start_he = F.cross_entropy(net(x), y).item(), F.cross_entropy(he(x), y).item()
    assert abs(start - math.log(10)) < abs(start_he - math.log(10))
    with pytest.raises(ConfigError, match="classifier_gain"):
        SPPNet(activation=activation_factory("elu"), classifier_gain=0.0, **SMALL)


@pytest.mark.parametrize(
    ("size", "layer"), [(56, "'spp'"), (10, "'pool3'"), (3, "'pool1'"), (1, "'stack1.conv1'")]
)
def test_too_small_input_names_the_layer(size: int, layer: str) -> None:
    with pytest.raises(ConfigError, match=layer):
        SPPNet(activation=activation_factory("elu"), input_size=size, **SMALL)


def test_a_small_smoke_configuration_builds() -> None:
    # 56x56 crops need conv1 stride 1 and no pooling before SPP to keep a 7x7 map.
    net = SPPNet(
        activation=activation_factory("elu"),
        conv_stacks=[(1, 8, 3), (1, 8, 3), (1, 8, 3)],
        conv1=(8, 3, 1, 1),
        pool_before_spp=False,
        fc=(16, 16),
        num_classes=10,
        input_size=56,
    )
    assert net.map_size == 7
    assert net(torch.randn(1, 3, 56, 56)).shape == (1, 10)


def test_bad_arguments() -> None:
    elu = activation_factory("elu")
    with pytest.raises(ConfigError, match="conv1"):
        SPPNet(activation=elu, conv1=(96, 6, 2))
    with pytest.raises(ConfigError, match="at least one"):
        SPPNet(activation=elu, conv_stacks=[])
    with pytest.raises(ConfigError, match="odd kernel"):
        SPPNet(activation=elu, conv_stacks=[(1, 8, 2)])
    with pytest.raises(ConfigError, match="fc_dropout"):
        SPPNet(activation=elu, fc_dropout=1.0, **SMALL)
    with pytest.raises(ConfigError, match="activation"):
        SPPNet(activation="elu", **SMALL)
