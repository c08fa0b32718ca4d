"""The suite's ELU (``elurepro.activations.ELU``) against torch's: values bit-identical to
``nn.ELU``, gradient bit-identical to torch's in-place ELU and within fp32 rounding of ``nn.ELU``'s,
the output (not the input) kept for the backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elurepro.activations import ELU, build_activation
from elurepro.models.convnet import StackConvNet


def _inputs(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normal values at several scales, tiny and huge negatives, signed zeros, -inf."""
    gen = torch.Generator().manual_seed(0)
    x = torch.cat(
        [
            torch.randn(4096, generator=gen) * 3,
            -torch.rand(512, generator=gen) * 1e-4,
            torch.linspace(-120, 5, 1024),
            torch.tensor([-0.0, 0.0, -1e-30, -1e-45, -88.7, -104.0, float("-inf"), 1e30]),
        ]
    )
    return x.to(dtype)


def _value_and_grad(act, x: torch.Tensor, g: torch.Tensor, inplace: bool = False):
    x = x.clone().requires_grad_()
    y = act(x.clone() if inplace else x)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_values_equal_nn_elu_and_gradient_equals_torch_inplace_elu(alpha, dtype):
    x = _inputs(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    ours, ours_grad = _value_and_grad(ELU(alpha=alpha), x, g)
    ref, _ = _value_and_grad(nn.ELU(alpha=alpha), x, g)
    assert torch.equal(ours, ref)
    inplace = lambda t: F.elu(t, alpha, inplace=True)  # noqa: E731
    _, inplace_grad = _value_and_grad(inplace, x, g, inplace=True)
    assert torch.equal(ours_grad, inplace_grad)


def test_gradient_within_fp32_rounding_of_nn_elu_and_of_the_exact_derivative():
    x = _inputs()[:-2]  # finite inputs: the derivative exp(x) is defined
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    _, ours = _value_and_grad(ELU(), x, g)
    _, ref = _value_and_grad(nn.ELU(), x, g)
    ulp = 2.0**-23
    assert ((ours - ref).abs() <= 2 * ulp * g.abs()).all()
    exact = g.double() * torch.where(x > 0, 1.0, torch.exp(x.double()))
    assert ((ours.double() - exact).abs() <= 2 * ulp * g.abs().double()).all()
    assert not torch.equal(ours, ref)  # a different formula: the test would see a swap back


def test_the_backward_keeps_the_output_not_the_input():
    x = torch.randn(64, 32, requires_grad=True)
    y = ELU()(x * 1.0)
    (saved,) = y.grad_fn.saved_tensors
    assert saved.data_ptr() == y.data_ptr()
    assert nn.ELU()(x * 1.0).grad_fn.name() == "EluBackward0"  # torch's keeps its input


def test_the_registry_builds_it():
    unit = build_activation("elu", alpha=0.7)
    assert type(unit) is ELU and unit.alpha == 0.7
    inplace = ELU(inplace=True)  # torch's own in-place path, as nn.ELU(inplace=True)
    x = torch.randn(10)
    assert torch.equal(inplace(x.clone()), nn.ELU()(x))


def test_elu_conv_stacks_still_pool_before_their_last_unit():
    net = StackConvNet([["1x8x3"], ["1x4x1"]], 3, 8, lambda: build_activation("elu"), [0.0, 0.0])
    assert net.stacks[0].pool_first
