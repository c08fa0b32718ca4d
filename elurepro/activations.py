"""Name -> module registry of activation functions, and the one parser of activation specs.

The paper's four units (ELU, ReLU, LReLU, SReLU) plus modern ones, so that any of them can be put
through the paper's protocol by name: ``build_activation("lrelu", alpha=0.1)``. A config names a
unit as ``"elu"`` or ``{name: lrelu, alpha: 0.3}``; ``parse_activation`` turns either into an
``ActivationSpec`` with every parameter filled in, so that equal units compare (and hash) equal
however they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Unit:
    """A registry entry: a constructor and its parameters with their defaults."""

    build: Callable[..., nn.Module]
    defaults: Mapping[str, Any]


ACTIVATIONS: dict[str, Unit] = {
    "elu": Unit(_elu, {"alpha": 1.0}),
    "relu": Unit(nn.ReLU, {}),
    "lrelu": Unit(_lrelu, {"alpha": 0.1}),
    "srelu": Unit(SReLU, {}),
    "selu": Unit(nn.SELU, {}),
    "celu": Unit(_celu, {"alpha": 1.0}),
    "gelu": Unit(_gelu, {"approximate": "none"}),
    "silu": Unit(nn.SiLU, {}),
    "mish": Unit(nn.Mish, {}),
    "prelu": Unit(_prelu, {"init": 0.25}),
}


@dataclass(frozen=True)
class ActivationSpec:
    """A unit and all its parameters (defaults filled in): what a member computes with."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def label(self) -> str:
        """The name, plus every parameter that differs from the registry's default:
        ``lrelu`` (alpha 0.1), ``lrelu_alpha0.3``. Injective over specs of one registry."""
        defaults = ACTIVATIONS[self.name].defaults
        extra = "".join(
            f"_{key}{_short(value)}" for key, value in self.params if value != defaults.get(key)
        )
        return self.name + extra

    def build(self) -> nn.Module:
        return ACTIVATIONS[self.name].build(**self.kwargs)

    def factory(self) -> Callable[[], nn.Module]:
        """A zero-argument constructor, for models that need one module per layer."""
        return self.build


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_activation(spec: str | Mapping[str, Any] | ActivationSpec) -> ActivationSpec:
    """``"elu"`` or ``{"name": "lrelu", "alpha": 0.3}`` -> a validated ``ActivationSpec``."""
    if isinstance(spec, ActivationSpec):
        return spec
    if isinstance(spec, str):
        name, given = spec, {}
    elif isinstance(spec, Mapping):
        given = dict(spec)
        if "name" not in given:
            raise ConfigError(f"activation entry {dict(spec)} needs a 'name'")
        name = given.pop("name")
    else:
        raise ConfigError(
            f"an activation is a name or {{name: ..., <param>: ...}}, got {spec!r} "
            f"({type(spec).__name__})"
        )
    key = str(name).lower()
    if key not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unknown activation {name!r}; known activations: {known}")
    defaults = ACTIVATIONS[key].defaults
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ConfigError(
            f"bad parameters {given} for activation {name!r}: unknown {', '.join(unknown)} "
            f"(parameters it takes: {allowed})"
        )
    params = {k: _typed(key, k, given.get(k, d), d) for k, d in defaults.items()}
    parsed = ActivationSpec(key, tuple(sorted(params.items())))
    parsed.build()  # the constructor's own range checks raise ConfigError now, not mid-run
    return parsed


def _typed(unit: str, key: str, value: Any, default: Any) -> Any:
    """The parameter in its default's type (YAML gives 1 for 1.0); ConfigError if impossible."""
    if (
        isinstance(default, float)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        return float(value)
    if isinstance(value, type(default)):
        return value
    raise ConfigError(
        f"activation {unit!r}: parameter {key}={value!r} must be a {type(default).__name__}"
    )


def build_activation(name: str, **params: Any) -> nn.Module:
    """A fresh activation module; unknown names and parameters raise ConfigError."""
    return parse_activation({"name": name, **params}).build()


def activation_factory(name: str, **params: Any) -> Callable[[], nn.Module]:
    """A zero-argument constructor, validated now, for models that need one module per layer."""
    return parse_activation({"name": name, **params}).factory()
