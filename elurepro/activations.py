"""Name -> module registry of activation functions, and the one parser of activation specs.

The paper's four units (ELU, ReLU, LReLU, SReLU) plus modern ones, so that any of them can be put
through the paper's protocol by name: ``build_activation("lrelu", alpha=0.1)``. A config names a
unit as ``"elu"`` or ``{name: lrelu, alpha: 0.3}``; ``parse_activation`` turns either into an
``ActivationSpec`` with every parameter filled in, so that equal units compare (and hash) equal
however they were written. A unit of your own needs no entry here: ``{name: mypkg.acts:StarReLU,
scale: 0.8}`` imports ``StarReLU`` from ``mypkg.acts`` (an ``nn.Module`` class, or a function
returning a module) and reads its parameters and their defaults from its signature.
"""

from __future__ import annotations

import importlib
import inspect
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


class _ELUFromOutput(torch.autograd.Function):
    """torch's ELU kernel forward; the gradient from the saved output, as torch's in-place ELU
    computes it: d/dx ELU(x) = ELU(x) + alpha for x <= 0, 1 above."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        h = torch.ops.aten.elu(x, alpha, 1, 1)
        ctx.save_for_backward(h)
        ctx.alpha = alpha
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (h,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, ctx.alpha, 1, 1, True, h), None


class ELU(nn.ELU):
    """``nn.ELU`` with the gradient of torch's in-place ELU, computed from the output.

    The values are ``nn.ELU``'s, bit for bit (the same kernel). ``nn.ELU``'s backward evaluates
    the exponential a second time (alpha * exp(x)), which on a CPU costs as much as several
    ReLU backward passes; this one reads it off the output (ELU(x) + alpha), at a ReLU
    backward's cost, bit-identical to ``F.elu(x, inplace=True)``'s gradient and within fp32
    rounding (2^-22 |grad|) of ``nn.ELU``'s. Saving the output rather than the input also lets
    the input be freed. ``tests/test_fast_elu.py`` checks all three.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return _ELUFromOutput.apply(x, self.alpha)


def _elu(alpha: float = 1.0) -> nn.Module:
    if alpha <= 0:
        raise ConfigError(f"ELU needs alpha > 0, got {alpha}")
    return ELU(alpha=alpha)


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
        """``lrelu`` (alpha 0.1), ``lrelu_alpha0.3``, ``mypkg.acts:StarReLU_bias0_scale0.8``:
        see ``unit_label``."""
        return unit_label(self.name, self.kwargs)

    def build(self) -> nn.Module:
        return _unit(self.name).build(**self.kwargs)

    def factory(self) -> Callable[[], nn.Module]:
        """A zero-argument constructor, for models that need one module per layer."""
        return self.build


def unit_label(name: str, params: Mapping[str, Any]) -> str:
    """A unit's name and parameters as one label, for folders, reports and TensorBoard.

    A registry unit shows the parameters that differ from its defaults (``lrelu_alpha0.3``); a
    unit of your own (``module:attribute``) shows every parameter, so that its label follows from
    what a run stored alone, without importing code that may have changed or be missing since.
    Injective over the specs of one registry; nothing is imported.
    """
    defaults = ACTIVATIONS[name].defaults if name in ACTIVATIONS else {}
    shown = sorted((k, v) for k, v in params.items() if k not in defaults or v != defaults[k])
    return name + "".join(f"_{key}{_short(value)}" for key, value in shown)


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_REQUIRED = object()  # a parameter of your own unit that has no default
_SCALARS = (bool, int, float, str)


def is_own_unit(name: str) -> bool:
    """Whether ``name`` is ``<module>:<attribute>`` rather than a registry name."""
    return ":" in name


def _unit(name: str) -> Unit:
    """The registry's entry, or the ``Unit`` of the callable that ``module:attribute`` names,
    its parameters and their defaults read from its signature (``_REQUIRED`` where none)."""
    if name in ACTIVATIONS:
        return ACTIVATIONS[name]
    module, _, attribute = name.partition(":")
    try:
        build = getattr(importlib.import_module(module), attribute)
    except Exception as err:  # not found, or the module's own code failed while importing
        raise ConfigError(
            f"activation {name!r}: cannot import it ({type(err).__name__}: {err}); "
            f"install the package that holds {module} or put its folder on PYTHONPATH"
        ) from None
    if not callable(build):
        raise ConfigError(
            f"activation {name!r} is a {type(build).__name__}, not an nn.Module factory "
            "(an nn.Module class, or a function returning a module)"
        )
    try:
        signature = inspect.signature(build)
    except (TypeError, ValueError):  # a builtin without one: it takes no parameters here
        return Unit(build, {})
    taken = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    defaults = {
        p.name: _REQUIRED if p.default is inspect.Parameter.empty else p.default
        for p in signature.parameters.values()
        if p.kind in taken
    }
    return Unit(build, defaults)


def parse_activation(spec: str | Mapping[str, Any] | ActivationSpec) -> ActivationSpec:
    """``"elu"``, ``{"name": "lrelu", "alpha": 0.3}`` or ``{"name": "mypkg.acts:StarReLU",
    "scale": 0.8}`` -> a validated ``ActivationSpec`` (ConfigError, one line, if not)."""
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
    # Registry names are case-insensitive; module paths are not.
    key = str(name) if is_own_unit(str(name)) else str(name).lower()
    if not is_own_unit(key) and key not in ACTIVATIONS:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(
            f"unknown activation {name!r}; known activations: {known}, or "
            "<module>:<attribute> naming a unit of your own"
        )
    defaults = _unit(key).defaults
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise ConfigError(
            f"bad parameters {given} for activation {name!r}: unknown {', '.join(unknown)} "
            f"(parameters it takes: {allowed})"
        )
    missing = [k for k, d in defaults.items() if d is _REQUIRED and k not in given]
    if missing:
        raise ConfigError(f"activation {name!r} needs the parameter(s) {', '.join(missing)}")
    params = {k: _typed(key, k, given.get(k, d), d) for k, d in defaults.items()}
    parsed = ActivationSpec(key, tuple(sorted(params.items())))
    _check_builds(parsed)  # range checks and the factory's type, now rather than mid-run
    return parsed


def _check_builds(spec: ActivationSpec) -> None:
    try:
        module = spec.build()
    except ConfigError:
        raise
    except Exception as err:  # a unit of your own refusing its parameters
        raise ConfigError(
            f"activation {spec.label!r}: building it failed ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"activation {spec.name!r} gave a {type(module).__name__}, not an nn.Module: name "
            "an nn.Module class, or a function returning a module"
        )


def _typed(unit: str, key: str, value: Any, default: Any) -> Any:
    """The parameter in its default's type (YAML gives 1 for 1.0); ConfigError if impossible.
    Without a default (or with None), any number, string or bool is taken as it is."""
    if value is not None and not isinstance(value, _SCALARS):
        raise ConfigError(
            f"activation {unit!r}: parameter {key}={value!r} must be a number, string or bool"
        )
    if default is _REQUIRED or default is None:
        return value
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
