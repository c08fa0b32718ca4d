"""Name -> module registry of activation functions.

The paper's four units (ELU, ReLU, LReLU, SReLU) plus modern ones, so that any of them can be put
through the paper's protocol by name: ``build_activation("lrelu", alpha=0.1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from elurepro.errors import ConfigError


class SReLU(nn.Module):
    """Shifted ReLU of the paper: max(-1, x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=-1.0)


def _elu(alpha: float = 1.0) -> nn.Module:
    if alpha <= 0:
        raise ConfigError(f"ELU needs alpha > 0, got {alpha}")
    return nn.ELU(alpha=alpha)


def _lrelu(alpha: float = 0.1) -> nn.Module:
    if not 0 < alpha < 1:
        raise ConfigError(f"LReLU needs 0 < alpha < 1, got {alpha}")
    return nn.LeakyReLU(negative_slope=alpha)


def _celu(alpha: float = 1.0) -> nn.Module:
    return nn.CELU(alpha=alpha)


def _gelu(approximate: str = "none") -> nn.Module:
    return nn.GELU(approximate=approximate)


def _prelu(init: float = 0.25) -> nn.Module:
    # One shared slope per layer (PyTorch's default); it is learned, so it is the one unit here
    # with parameters, and it is trained like any other weight (no weight decay, U4).
    return nn.PReLU(num_parameters=1, init=init)


ACTIVATIONS: dict[str, Callable[..., nn.Module]] = {
    "elu": _elu,
    "relu": nn.ReLU,
    "lrelu": _lrelu,
    "srelu": SReLU,
    "selu": nn.SELU,
    "celu": _celu,
    "gelu": _gelu,
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "prelu": _prelu,
}


def build_activation(name: str, **params: Any) -> nn.Module:
    """A fresh activation module; unknown names and parameters raise ConfigError."""
    key = name.lower()
    if key not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unknown activation {name!r}; known activations: {known}")
    try:
        return ACTIVATIONS[key](**params)
    except TypeError as err:
        raise ConfigError(f"bad parameters {params} for activation {name!r}: {err}") from None


def activation_factory(name: str, **params: Any) -> Callable[[], nn.Module]:
    """A zero-argument constructor, validated now, for models that need one module per layer."""
    build_activation(name, **params)
    return lambda: build_activation(name, **params)
