import math

import pytest
import torch
import torch.nn.functional as F

from elurepro.activations import ACTIVATIONS, activation_factory, build_activation
from elurepro.errors import ConfigError

X = torch.linspace(-6, 6, 241, dtype=torch.float64)


def _formula(name: str, x: torch.Tensor) -> torch.Tensor:
    """The paper's definitions (§2) written out element by element."""

    def elu(v, a=1.0):
        return v if v > 0 else a * (math.exp(v) - 1)

    table = {
        "elu": elu,
        "relu": lambda v: max(0.0, v),
        "lrelu": lambda v: max(0.1 * v, v),
        "srelu": lambda v: max(-1.0, v),
        "celu": elu,  # CELU equals ELU at alpha = 1
    }
    return torch.tensor([table[name](float(v)) for v in x], dtype=torch.float64)


@pytest.mark.parametrize("name", ["elu", "relu", "lrelu", "srelu", "celu"])
def test_matches_paper_formula(name):
    torch.testing.assert_close(build_activation(name)(X), _formula(name, X))


@pytest.mark.parametrize(
    "name,reference",
    [
        ("elu", lambda x: F.elu(x, 1.0)),
        ("relu", F.relu),
        ("lrelu", lambda x: F.leaky_relu(x, 0.1)),
        ("srelu", lambda x: F.relu(x + 1) - 1),
        ("selu", F.selu),
        ("gelu", F.gelu),
        ("silu", lambda x: x * torch.sigmoid(x)),
        ("mish", lambda x: x * torch.tanh(F.softplus(x))),
        ("prelu", lambda x: torch.where(x > 0, x, 0.25 * x)),
    ],
)
def test_matches_reference_implementation(name, reference):
    torch.testing.assert_close(build_activation(name).double()(X), reference(X))


def test_elu_alpha_parameter_and_derivative():
    act = build_activation("elu", alpha=0.5)
    torch.testing.assert_close(
        act(torch.tensor([-1.0], dtype=torch.float64)),
        torch.tensor([0.5 * (math.exp(-1) - 1)], dtype=torch.float64),
    )
    # §2: f'(x) = f(x) + alpha for x <= 0
    x = torch.tensor([-2.0, -0.3], dtype=torch.float64, requires_grad=True)
    y = act(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, y.detach() + 0.5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_gradcheck(name):
    act = build_activation(name).double()
    # Avoid the kinks at 0 and -1, where finite differences disagree with any subgradient.
    x = torch.tensor(
        [-3.1, -1.7, -0.6, -0.2, 0.3, 1.4, 2.9], dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(act, (x,))


def test_unknown_name_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        build_activation("swishy")
    for known in ("elu", "relu", "lrelu", "srelu", "gelu"):
        assert known in str(err.value)


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="alpha"):
        build_activation("elu", alpha=-1.0)
    with pytest.raises(ConfigError, match="bad parameters"):
        build_activation("relu", alpha=0.3)


def test_factory_gives_fresh_modules():
    make = activation_factory("prelu")
    assert make() is not make()
