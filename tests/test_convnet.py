"""The paper's CNNs: shapes, parameter counts, init pairing, dropout phases, errors."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from elurepro.activations import activation_factory
from elurepro.errors import ConfigError
from elurepro.models.convnet import (
    LayerSpec,
    StackConvNet,
    layer_shapes,
    parse_stack,
    with_classes,
)
from elurepro.monitor import Probe
from tests.hydra_utils import CONFIGS


def _paper_net(model: str) -> tuple[list[list[str]], list[float]]:
    """The stacks and dropout rates the training reads: the model YAML, the one source."""
    cfg = yaml.safe_load((CONFIGS / "model" / f"{model}.yaml").read_text())
    return cfg["stacks"], cfg["dropout"]


CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT = _paper_net("cnn11")
CIFAR_18LAYER_STACKS, CIFAR_18LAYER_DROPOUT = _paper_net("cnn18")
NETS = {
    "11layer": (CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT),
    "18layer": (CIFAR_18LAYER_STACKS, CIFAR_18LAYER_DROPOUT),
}


def expected_layers(stacks: list[list[str]]) -> list[tuple[int, int, int]]:
    """(stack, channels, kernel) for every conv layer, parsed here independently."""
    out = []
    for s, stack in enumerate(stacks):
        for group in stack:
            n, c, k = (int(v) for v in re.split("[x×X]", group))
            out += [(s, c, k)] * n
    return out


def expected_params(stacks: list[list[str]], in_channels: int, batchnorm: bool) -> int:
    layers = expected_layers(stacks)
    total, c_in = 0, in_channels
    for i, (_, c, k) in enumerate(layers):
        total += c * c_in * k * k + c
        if batchnorm and i < len(layers) - 1:  # no BN on the class-score layer
            total += 2 * c
        c_in = c
    return total


def build(stacks, dropout, convention="A", activation="elu", batchnorm=False, seed=0, **kw):
    torch.manual_seed(seed)
    return StackConvNet(
        stacks,
        3,
        kw.pop("input_size", 32),
        activation_factory(activation),
        dropout,
        convention=convention,
        batchnorm=batchnorm,
        **kw,
    )


def conv_output_sizes(model: nn.Module, x: torch.Tensor) -> list[int]:
    sizes: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sizes


# Paper §5.3's shape table under A: conv outputs, then the map after each stack.
PAPER_11_CONV_SIZES_A = [32, 16, 16, 8, 9, 5, 6, 3, 4, 2, 1]
PAPER_11_POOLED_A = [16, 8, 5, 3, 2, 1, 1]
# Paper §5.4: 32 -> 16 | 16,17,18,19 -> 10 | 10,11,12,13 -> 7 | 7,8,9 -> 5 | 5,6,7 -> 4 |
# 4,5 -> 3 | 3 -> 2 | 2 -> 1
PAPER_18_CONV_SIZES_A = [32, 16, 17, 18, 19, 10, 11, 12, 13, 7, 8, 9, 5, 6, 7, 4, 5, 3, 2]
PAPER_18_POOLED_A = [16, 10, 7, 5, 4, 3, 2, 1]
# Paper §8: MACs per image by convention.
PAPER_MACS = {
    ("11layer", "A"): 172.9e6,
    ("11layer", "B"): 166e6,
    ("11layer", "C"): 158e6,
    ("18layer", "A"): 3.28e9,
    ("18layer", "B"): 2.79e9,
    ("18layer", "C"): 1.50e9,
}


def test_paper_shape_tables_under_a():
    for stacks, conv_sizes, pooled in (
        (CIFAR_11LAYER_STACKS, PAPER_11_CONV_SIZES_A, PAPER_11_POOLED_A),
        (CIFAR_18LAYER_STACKS, PAPER_18_CONV_SIZES_A, PAPER_18_POOLED_A),
    ):
        rows = layer_shapes(stacks, 3, 32, "A")
        assert [r.out_size for r in rows if r.op == "conv"] == conv_sizes
        assert [r.out_size for r in rows if r.op != "conv"] == pooled


@pytest.mark.parametrize("convention", ["A", "B", "C"])
@pytest.mark.parametrize("net", ["11layer", "18layer"])
def test_params_macs_and_output(net, convention):
    stacks, dropout = NETS[net]
    rows = layer_shapes(stacks, 3, 32, convention)
    macs = sum(r.macs for r in rows)
    tolerance = 0.002 if convention == "A" else 0.01  # the paper rounds B and C more coarsely
    assert macs == pytest.approx(PAPER_MACS[(net, convention)], rel=tolerance)

    model = build(stacks, dropout, convention)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == expected_params(stacks, 3, batchnorm=False)
    assert n_params == pytest.approx(1.67e6 if net == "11layer" else 39.3e6, rel=0.005)
    model_bn = build(stacks, dropout, convention, batchnorm=True)
    assert sum(p.numel() for p in model_bn.parameters()) == expected_params(stacks, 3, True)

    model.eval()
    x = torch.randn(2, 3, 32, 32)
    sizes = conv_output_sizes(model, x)
    assert sizes == [r.out_size for r in rows if r.op == "conv"]
    assert model(x).shape == (2, 100)
    if convention == "A":
        assert sizes == (PAPER_11_CONV_SIZES_A if net == "11layer" else PAPER_18_CONV_SIZES_A)


def test_probe_after_every_hidden_activation_only():
    for stacks, dropout in NETS.values():
        model = build(stacks, dropout, "C")
        n_hidden = len(expected_layers(stacks)) - 1
        assert sum(isinstance(m, Probe) for m in model.modules()) == n_hidden


def reference_forward(model: StackConvNet, x: torch.Tensor, convention: str) -> torch.Tensor:
    """Recompute a no-BN eval forward with functional ops, from the stack strings."""
    act = torch.relu
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    i = 0
    for stack in model.stack_specs:
        layers = [int(g.split("x")[2]) for g in stack for _ in range(int(g.split("x")[0]))]
        for k in layers:
            conv = convs[i]
            if k % 2:
                x = F.pad(x, [(k - 1) // 2] * 4)
            elif convention in "AB":
                x = F.pad(x, [k // 2] * 4)
            else:  # C: 0 before, 1 after for k = 2
                x = F.pad(x, [k // 2 - 1, k // 2, k // 2 - 1, k // 2])
            x = F.conv2d(x, conv.weight, conv.bias)
            i += 1
            if i < len(convs):
                x = act(x)
        if x.shape[-1] > 1:
            x = F.max_pool2d(x, 2, 2, ceil_mode=(convention == "A"))
    return x.amax(dim=(2, 3))


@pytest.mark.parametrize("convention", ["A", "B", "C"])
def test_forward_matches_functional_reference(convention):
    # Odd input size tells ceil from floor pooling; the map ends above 1x1, so the class
    # score is the spatial max.
    stacks = [["1x4x3", "1x5x2"], ["1x3x1"]]
    model = build(stacks, [0.5, 0.0], convention, activation="relu", input_size=7).eval()
    x = torch.randn(3, 3, 7, 7)
    expected = reference_forward(model, x, convention)
    assert expected.shape == (3, 3)
    torch.testing.assert_close(model(x), expected)


def test_batchnorm_order_conv_bn_act():
    model = build([["1x4x3"], ["1x2x1"]], [0.0, 0.0], batchnorm=True, input_size=6)
    model.eval()
    layer = model.stacks[0].layers[0]
    with torch.no_grad():
        layer.bn.running_mean.uniform_(-1, 1)
        layer.bn.running_var.uniform_(0.5, 2)
        layer.bn.weight.uniform_(0.5, 2)
        layer.bn.bias.uniform_(-1, 1)
    seen = []
    hook = layer.probe.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(2, 3, 6, 6)
    model(x)
    hook.remove()
    bn = layer.bn
    z = F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1)
    z = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + 1e-5)
    expected = F.elu(z * bn.weight[:, None, None] + bn.bias[:, None, None])
    torch.testing.assert_close(seen[0], expected)


def test_same_initial_conv_weights_across_activations_and_bn():
    def conv_state(model):
        return {k: v for k, v in model.state_dict().items() if ".conv." in k}

    reference = conv_state(build(CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT, seed=7))
    for activation in ("relu", "lrelu", "srelu", "prelu"):
        for batchnorm in (False, True):
            other = conv_state(
                build(
                    CIFAR_11LAYER_STACKS,
                    CIFAR_11LAYER_DROPOUT,
                    activation=activation,
                    batchnorm=batchnorm,
                    seed=7,
                )
            )
            assert other.keys() == reference.keys()
            for key in reference:
                assert torch.equal(other[key], reference[key]), (activation, batchnorm, key)
    different = conv_state(build(CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT, seed=8))
    first = "stacks.0.layers.0.conv.weight"
    assert not torch.equal(different[first], reference[first])


def test_batchnorm_consumes_no_random_numbers():
    after = []
    for batchnorm in (False, True):
        build([["1x8x3"], ["1x4x1"]], [0.0, 0.0], batchnorm=batchnorm, input_size=8, seed=3)
        after.append(torch.rand(4))
    assert torch.equal(after[0], after[1])


def test_he_normal_init_and_zero_bias():
    model = build(CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT, seed=1)
    conv = model.stacks[1].layers[1].conv  # 3x3, 192 -> 240: 414,720 weights
    fan_in = 192 * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.01)
    assert abs(conv.weight.mean().item()) < 0.01 * (2 / fan_in) ** 0.5
    assert all(
        torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, nn.Conv2d)
    )


def test_set_dropout_changes_rates_keeps_weights():
    model = build(CIFAR_18LAYER_STACKS, CIFAR_18LAYER_DROPOUT, convention="C")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scaled = [r * 1.5 for r in CIFAR_18LAYER_DROPOUT]
    model.set_dropout(scaled, all_layers=True)
    assert model.dropout_rates == pytest.approx(scaled)
    assert model.dropout_all_layers
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # One dropout per conv layer with a non-zero stack rate: 1 + 4 + 4 + 3 + 3 + 2 layers in
    # stacks 2-6 (stack 1 and 7 have rate 0).
    active = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert len(active) == 4 + 4 + 3 + 3 + 2
    model.set_dropout(CIFAR_18LAYER_DROPOUT, all_layers=False)
    active = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]
    assert len(active) == 5  # stacks 2-6, after pooling only


def _pooled_and_dropped(model: StackConvNet, run) -> tuple[list, list]:
    """The first stack's pooled map and its output after dropout, for every forward of run()."""
    pooled, dropped = [], []
    stack = model.stacks[0]
    hooks = [
        stack.pool.register_forward_hook(lambda _m, _i, out: pooled.append(out)),
        stack.register_forward_hook(lambda _m, _i, out: dropped.append(out)),
    ]
    run()
    for h in hooks:
        h.remove()
    return pooled, dropped


def test_dropout_is_applied_after_pooling_and_switches_off():
    model = build([["1x6x3", "1x6x1"], ["1x3x1"]], [0.5, 0.0], input_size=8)
    model.train()
    x = torch.randn(4, 3, 8, 8)
    pooled, dropped = _pooled_and_dropped(model, lambda: model(x))
    kept = dropped[0] != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(dropped[0][kept], 2 * pooled[0][kept])
    model.set_dropout([0.0, 0.0], all_layers=True)
    torch.testing.assert_close(model(x), model.eval()(x))


def test_dropout_rate_errors():
    with pytest.raises(ConfigError, match="7 dropout rates for 8 stacks"):
        build(CIFAR_18LAYER_STACKS, CIFAR_11LAYER_DROPOUT)
    model = build([["1x4x3"], ["1x2x1"]], [0.0, 0.0], input_size=4)
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        model.set_dropout([1.0, 0.0], all_layers=False)


def test_parse_stack_forms():
    expected = [LayerSpec(1, 192, 1), LayerSpec(2, 640, 2)]
    assert parse_stack(["1x192x1", "2x640x2"]) == expected
    assert parse_stack("1X192X1, 2 × 640 × 2") == expected
    assert parse_stack("1×192×5") == [LayerSpec(1, 192, 5)]


@pytest.mark.parametrize("bad", ["1x192", "1x192x", "ax192x5", "1x0x5", "1-192-5", ""])
def test_parse_stack_malformed(bad):
    with pytest.raises(ConfigError) as err:
        parse_stack(bad)
    assert "n x channels x kernel" in str(err.value) or ">= 1" in str(err.value)
    assert repr(bad.split(",")[0]) in str(err.value)


def test_impossible_shape_names_the_layer():
    # Unpadded 2x2 convs (the reading PAPER §4 rules out) shrink 4 -> 3 -> 2 -> 1 -> 0.
    stacks = [["4x16x2"], ["1x10x1"]]
    with pytest.raises(
        ConfigError, match=r"stack 1, layer 4 \(2x2 conv, 16 ch\): map would be 0x0"
    ):
        build(stacks, [0.0, 0.0], convention="V", input_size=4)
    with pytest.raises(ConfigError, match=r"stack 4, layer 3 \(2x2 conv, 896 ch\)"):
        layer_shapes(CIFAR_18LAYER_STACKS, 3, 32, "V")
    # Convention C keeps the map: the same stacks are fine there.
    assert build(stacks, [0.0, 0.0], convention="C", input_size=4)(
        torch.randn(1, 3, 4, 4)
    ).shape == (
        1,
        10,
    )
    with pytest.raises(ConfigError, match="unknown padding/pooling convention 'D'"):
        layer_shapes(stacks, 3, 4, "D")


def test_with_classes_and_cifar10_output():
    stacks = with_classes(CIFAR_18LAYER_STACKS, 10)
    assert stacks[:-1] == CIFAR_18LAYER_STACKS[:-1]
    assert stacks[-1] == ["1x10x1"]
    assert with_classes([["1x4x3"], ["2x7x1"]], 5)[-1] == ["1x7x1", "1x5x1"]
    model = build(with_classes(CIFAR_11LAYER_STACKS, 10), CIFAR_11LAYER_DROPOUT).eval()
    assert model.num_classes == 10
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wrong_input_shape_and_describe():
    model = build(CIFAR_11LAYER_STACKS, CIFAR_11LAYER_DROPOUT)
    with pytest.raises(ConfigError, match="input_size"):
        model(torch.randn(1, 3, 28, 28))
    table = model.describe()
    assert "1,669,028" in table and "172,899,904" in table


def test_dropout_generator_masks_scale_and_reproduce():
    """With a mask generator (stacked populations), dropout still zeroes about p of the values
    and scales the rest by 1 / (1 - p); the same generator state gives the same masks."""
    model = build([["1x6x3", "1x6x1"], ["1x3x1"]], [0.5, 0.0], input_size=8).train()
    gen = torch.Generator()
    model.use_dropout_generator(gen)
    x = torch.randn(64, 3, 8, 8)

    def twice() -> None:
        for _ in range(2):
            gen.manual_seed(11)
            model(x)

    pooled, dropped = _pooled_and_dropped(model, twice)
    kept = dropped[0] != 0
    assert 0.4 < kept.float().mean() < 0.6
    torch.testing.assert_close(dropped[0][kept], 2 * pooled[0][kept])
    assert torch.equal(dropped[0], dropped[1])
    model.use_dropout_generator(None)
    assert all(m.generator is None for m in model.modules() if isinstance(m, nn.Dropout))


@pytest.mark.parametrize("unit", ["elu", "relu", "lrelu", "srelu", "gelu"])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_pooling_before_a_non_decreasing_unit_changes_nothing(unit, batchnorm):
    """Each stack's last unit runs after the max-pool when it is non-decreasing (and the monitor
    is not watching): outputs and gradients equal the layer-by-layer order's."""
    from elurepro.models.convnet import non_decreasing

    torch.manual_seed(0)
    stacks = [["1x8x3"], ["1x8x1", "1x12x2"], ["1x10x1"]]
    net = StackConvNet(stacks, 3, 16, activation_factory(unit), [0.0] * 3, batchnorm=batchnorm)
    assert [s.pool_first for s in net.stacks[:2]] == [
        non_decreasing(net.stacks[0].layers[0].act)
    ] * 2
    x = torch.randn(6, 3, 16, 16)
    fast = net(x)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), net.stacks[0].layers[0].conv.weight)
    handles = [s.layers[-1].probe.register_forward_hook(lambda *_: None) for s in net.stacks]
    plain = net(x)
    (g_plain,) = torch.autograd.grad(plain.square().sum(), net.stacks[0].layers[0].conv.weight)
    for h in handles:
        h.remove()
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- initialisation (U3) and U28


def test_he_reading_draws_what_kaiming_normal_draws():
    """init_gain=2 on fan_in is the reading before U3 changed: the same numbers, bit for bit, as
    torch's own He initialiser, so runs made then are recomputed exactly at those values."""
    net = build([["1x8x3"], ["1x6x2"], ["1x4x1"]], [0.0] * 3, init_fan="fan_in", init_gain=2.0)
    torch.manual_seed(0)
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
        expected = torch.empty_like(conv.weight)
        nn.init.kaiming_normal_(expected, mode="fan_in", nonlinearity="relu")
        assert torch.equal(conv.weight, expected)
        assert not conv.bias.any()


@pytest.mark.parametrize(("fan", "gain"), [("fan_in", 1.0), ("fan_out", 1.0), ("fan_in", 2.0)])
def test_init_variance_is_gain_over_fan(fan, gain):
    net = build([["1x64x3"], ["1x128x2"], ["1x10x1"]], [0.0] * 3, init_fan=fan, init_gain=gain)
    for conv in (m for m in net.modules() if isinstance(m, nn.Conv2d)):
        k = conv.kernel_size[0] * conv.kernel_size[1]
        n = k * (conv.in_channels if fan == "fan_in" else conv.out_channels)
        # The sample variance of >= 1,700 draws is within 10 % of gain / n.
        assert conv.weight.var().item() == pytest.approx(gain / n, rel=0.1)


def test_cifar_configs_use_the_chosen_initialisation():
    for name in ("cnn11", "cnn18"):
        model = yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text())
        assert (model["init_fan"], model["init_gain"], model["score_pool"]) == (
            "fan_in",
            1.0,
            "max",
        )
        assert model["unit_gains"] == {"relu": 1.6, "lrelu": 1.6}


@pytest.mark.parametrize("kind", ["convnet", "spp"])
def test_a_unit_gain_scales_the_shared_draw_of_that_unit_only(kind):
    """Seed r draws the same weights for every unit (U12); a unit listed in unit_gains gets them
    scaled by sqrt(its gain / init_gain) without BN, every other unit and every BN variant keeps
    init_gain."""
    from elurepro.members import expand_members
    from elurepro.models.registry import ModelContext, build_population

    if kind == "convnet":
        params = {"stacks": [["1x8x3"], ["1x6x2"], ["1x4x1"]], "dropout": [0.0] * 3}
        params |= {"in_channels": 3, "input_size": 8}
        ctx, batchnorm = ModelContext(4, 8), [False, True]
    else:
        params = {"conv1": [4, 3, 2, 1], "conv_stacks": [[1, 6, 3]], "fc": [8], "spp_levels": [1]}
        ctx, batchnorm = ModelContext(4, 16), [False]
    params |= {"init_gain": 1.0, "unit_gains": {"relu": 1.6}}
    units = ["elu", "relu", "lrelu", "srelu"]
    members = expand_members(units, batchnorm, None, [3], 0.01)
    nets = build_population(kind, params, members, ctx).members
    weights = {
        m.group: [x.weight for x in net.modules() if isinstance(x, (nn.Conv2d, nn.Linear))]
        for m, net in zip(members, nets, strict=True)
    }
    for i, elu in enumerate(weights["elu"]):
        assert torch.allclose(weights["relu"][i], elu * 1.6**0.5, rtol=1e-6, atol=0)
        for group in ("lrelu", "srelu", *(f"{u}+bn" for u in units if True in batchnorm)):
            assert torch.equal(weights[group][i], elu), group
        assert elu.var().item() == pytest.approx(1 / elu[0].numel(), rel=0.5)


def test_a_unit_gain_of_an_unknown_unit_is_one_line():
    from elurepro.assemble.validate import validate_config
    from tests.hydra_utils import load_config

    cfg = load_config("experiment=cifar_18layer", "+model.unit_gains.relux=1.6")
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    assert str(caught.value).startswith("model.unit_gains.relux='relux': unknown"), caught.value


def test_class_score_map_reduced_by_max_or_mean():
    # Ends at 2x2 before the last stack's pooling: the 18-layer net's case under convention A.
    stacks = [["1x4x3"], ["1x3x1"]]
    x = torch.randn(5, 3, 4, 4)
    scores = {}
    for pool in ("max", "avg"):
        net = build(stacks, [0.0, 0.0], input_size=4, score_pool=pool).eval()
        hook_out = []
        last = net.stacks[-1].layers[-1].conv
        h = last.register_forward_hook(lambda _m, _i, out, into=hook_out: into.append(out))
        scores[pool] = net(x)
        h.remove()
        assert hook_out[0].shape[-2:] == (2, 2)
        expected = hook_out[0].amax((-2, -1)) if pool == "max" else hook_out[0].mean((-2, -1))
        torch.testing.assert_close(scores[pool], expected)
    assert not torch.allclose(scores["max"], scores["avg"])


def test_bad_initialisation_settings_are_one_line():
    with pytest.raises(ConfigError, match="init_fan='fan_avg'"):
        build([["1x4x3"]], [0.0], init_fan="fan_avg")
    with pytest.raises(ConfigError, match="score_pool='mean'"):
        build([["1x4x3"]], [0.0], score_pool="mean")
    with pytest.raises(ConfigError, match="init_gain=0"):
        build([["1x4x3"]], [0.0], init_gain=0)
