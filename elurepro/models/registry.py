"""Model registry: ``model.kind`` in a config -> how to build a population of that model.

A new model is one module (its ``nn.Module``), one entry here, and its YAML files
(``configs/model/<name>.yaml`` with ``kind: <entry>``, and an experiment file). Every key of the
model YAML except ``kind`` and the task's keys is passed to the entry's builder as a keyword.
An entry may declare its keys (``schema``: a dataclass extending ``config.schema.Model``) and
the constraints that tie them to the data and the schedule (``constraints``); the validator
applies both before anything runs. Without a schema, the builder's signature is the check.
A model that lives outside this package needs no entry here: ``kind: <module>:<attribute>``
names its ``ModelEntry`` directly (imported when the config is built).

Two kinds of entry:
- ``member``: builds ONE net; the registry builds each member under ``torch.manual_seed(seed)``,
  so seed r gives every unit and BN variant the same initial weights (U12), and gathers them in a
  ``MemberList`` (trained one after another in one step).
- ``population``: builds all members at once as one lockstep population (stacked MLPs).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import nn

from elurepro.config.checks import (
    POSITIVE,
    PROBABILITY,
    anything,
    bad,
    boolean,
    choice,
    gains_by_unit,
    integer,
    items,
    number,
    show,
)
from elurepro.config.schema import CLASSES, OPTIONAL, Model, key
from elurepro.errors import ConfigError
from elurepro.members import MemberSpec
from elurepro.models.population import MemberList, Population


@dataclass(frozen=True)
class ModelContext:
    """What a builder may need beyond its YAML: facts of the data and the budget."""

    num_classes: int | None  # from the data set
    input_size: int | None  # side of the images the data delivers (None: flat vectors)
    width: float = 1.0  # budget.width: multiplies channel counts (reduced budgets of big nets)
    unit: str | None = None  # the member's unit (its name), for a gain of its own (U3)


# builder(activation, batchnorm, ctx, **yaml) -> one net
MemberBuilder = Callable[..., nn.Module]
# builder(members, ctx, **yaml) -> a population
PopulationBuilder = Callable[..., Population]


# constraints(model, data set name, optim.dropout_phases): ConfigError (one line) if violated
Constraints = Callable[[Mapping[str, Any], str, Sequence[Mapping[str, Any]]], None]


@dataclass(frozen=True)
class ModelEntry:
    member: MemberBuilder | None = None
    population: PopulationBuilder | None = None
    batchnorm: bool = False  # whether members may have a BatchNorm variant
    schema: type[Model] | None = None  # its YAML keys; None: the builder's signature only
    constraints: Constraints | None = None


def _no_dropout(phases: Sequence[Mapping[str, Any]], why: str) -> None:
    for i, phase in enumerate(phases):
        if any(phase["rates"]):
            raise bad(f"optim.dropout_phases[{i}].rates", phase["rates"], f"zeros ({why})")


# ------------------------------------------------------------------ mlp
@dataclass
class MlpModel(Model):
    sizes: list[int] = key(OPTIONAL, items(integer(1), "integers >= 1", min_len=2))


def _mlp_constraints(
    model: Mapping[str, Any], data: str, phases: Sequence[Mapping[str, Any]]
) -> None:
    if data == "mnist":  # the ends are fixed by the images and the task
        sizes = model["sizes"]
        last = 784 if model["task"] == "reconstruction" else 10
        if sizes[0] != 784 or sizes[-1] != last:
            raise bad(
                "model.sizes", sizes, f"784 inputs and {last} outputs for MNIST ({model['task']})"
            )
    _no_dropout(phases, "MLPs: no dropout")


def _mlp(members: Sequence[MemberSpec], ctx: ModelContext, sizes: Sequence[int]) -> Population:
    from elurepro.models.mlp import StackedMLP

    # A unit with parameters (PReLU's slope) is learned per member: each member its own module,
    # where parameter-free units share one module per contiguous slice of members.
    keys = [
        f"{m.activation.label}#{k}" if any(True for _ in m.activation.build().parameters())
        else m.activation.label
        for k, m in enumerate(members)
    ]  # fmt: skip
    return StackedMLP(
        list(sizes),
        [m.activation.factory() for m in members],
        keys,
        [m.seed for m in members],
    )


# ------------------------------------------------------------------ convnet
@dataclass
class ConvNetModel(Model):
    in_channels: int = key(OPTIONAL, integer(1))
    input_size: int = key(OPTIONAL, integer(1))
    # the paper's stack notation, parsed by the constraints
    stacks: list[Any] = key(OPTIONAL, items(anything, "stacks", min_len=1))
    dropout: list[float] = key(OPTIONAL, items(PROBABILITY, "rates in [0, 1)"))  # per stack
    # U2: padding and pooling conventions (A: 2x2 convs pad 1, ceil-mode pooling)
    convention: Literal["A", "B", "C", "V"] = key(OPTIONAL, choice("A", "B", "C", "V"))
    dropout_all_layers: bool = key(OPTIONAL, boolean)
    # U3: weights ~ N(0, init_gain / fan); runs before these keys were He-initialised
    init_fan: Literal["fan_in", "fan_out"] = key(
        OPTIONAL, choice("fan_in", "fan_out"), added_later="fan_in"
    )
    init_gain: float = key(OPTIONAL, POSITIVE, added_later=2.0)
    # U3: the gain of these units without BN (ReLU and LReLU: 1.6); other units init_gain
    unit_gains: dict[str, float] | None = key(OPTIONAL, gains_by_unit, added_later=None)
    # U28: a class-score map larger than 1x1 is reduced by max (or avg)
    score_pool: Literal["max", "avg"] = key(OPTIONAL, choice("max", "avg"), added_later="max")


def _convnet_constraints(
    model: Mapping[str, Any], data: str, phases: Sequence[Mapping[str, Any]]
) -> None:
    from elurepro.models.convnet import layer_shapes, parse_stack, with_classes

    for i, stack in enumerate(model["stacks"]):
        try:
            parse_stack(stack)
        except ConfigError as err:
            raise ConfigError(f"model.stacks[{i}]={show(stack)}: {err}") from None
    size, channels = model.get("input_size"), model.get("in_channels")
    if data in CLASSES and size is not None and channels is not None:
        stacks = with_classes(model["stacks"], CLASSES[data])
        try:  # a map that vanishes in some layer, named by the shape table
            layer_shapes(stacks, channels, size, model.get("convention", "A"))
        except ConfigError as err:
            raise ConfigError(f"model.stacks: {err}") from None
    n = len(model["stacks"])
    if len(model.get("dropout", [])) != n:
        raise bad("model.dropout", model.get("dropout"), f"{n} rates, one per stack")
    for i, phase in enumerate(phases):
        if len(phase["rates"]) != n:
            raise bad(f"optim.dropout_phases[{i}].rates", phase["rates"], f"{n} rates (stacks)")


def _convnet(
    activation: Callable[[], nn.Module],
    batchnorm: bool,
    ctx: ModelContext,
    stacks: Sequence[Any],
    **params: Any,
) -> nn.Module:
    from elurepro.models.convnet import StackConvNet, with_classes

    if ctx.num_classes is None:
        raise ConfigError("the conv nets need a data set with classes")
    # BN restores every layer's scale, so the signal a unit loses needs no making up (U3).
    params = unit_init_gain(params, None if batchnorm else ctx.unit)
    return StackConvNet(
        with_classes(stacks, ctx.num_classes), activation=activation, batchnorm=batchnorm, **params
    )


def unit_init_gain(params: Mapping[str, Any], unit: str | None) -> dict[str, Any]:
    """``params`` with ``unit_gains`` resolved into ``init_gain`` for this member's unit (U3)."""
    out = dict(params)
    gains = out.pop("unit_gains", None) or {}
    if unit in gains:
        out["init_gain"] = gains[unit]
    return out


# ------------------------------------------------------------------ spp
@dataclass
class SppModel(Model):
    in_channels: int = key(OPTIONAL, integer(1))
    conv1: list[int] = key(  # U23
        OPTIONAL, items(integer(0), "integers (channels, kernel, stride, pad)", length=4)
    )
    # (layers, channels, kernel), 'same' padding, 2x2/2 max pooling after each
    conv_stacks: list[list[int]] = key(
        OPTIONAL,
        items(
            items(integer(1), "integers (layers, channels, kernel)", length=3), "stacks", min_len=1
        ),
    )
    spp_levels: list[int] = key(OPTIONAL, items(integer(1), "integers >= 1", min_len=1))  # U24
    pool_before_spp: bool = key(OPTIONAL, boolean)
    fc: list[int] = key(OPTIONAL, items(integer(1), "integers >= 1"))
    fc_dropout: float = key(OPTIONAL, PROBABILITY)
    init_gain: float = key(OPTIONAL, POSITIVE, added_later=2.0)  # U3
    unit_gains: dict[str, float] | None = key(OPTIONAL, gains_by_unit, added_later=None)  # U3
    # U29: the class-score layer's own gain
    classifier_gain: float | None = key(
        OPTIONAL,
        number(0.0, low_open=True, null="init_gain like every other layer"),
        added_later=None,
    )


def _spp(
    activation: Callable[[], nn.Module],
    batchnorm: bool,
    ctx: ModelContext,
    conv1: Sequence[int],
    conv_stacks: Sequence[Sequence[int]],
    fc: Sequence[int],
    **params: Any,
) -> nn.Module:
    from elurepro.models.spp import SPPNet, scale_widths

    conv1, stacks, fc = scale_widths(conv1, conv_stacks, fc, ctx.width)
    params = unit_init_gain(params, ctx.unit)
    return SPPNet(
        activation=activation,
        conv1=conv1,
        conv_stacks=stacks,
        fc=fc,
        num_classes=ctx.num_classes or 1000,
        input_size=ctx.input_size or 224,
        **params,
    )


MODELS: dict[str, ModelEntry] = {
    "mlp": ModelEntry(population=_mlp, schema=MlpModel, constraints=_mlp_constraints),
    "convnet": ModelEntry(
        member=_convnet, batchnorm=True, schema=ConvNetModel, constraints=_convnet_constraints
    ),
    "spp": ModelEntry(member=_spp, schema=SppModel),
}


def register_model(kind: str, entry: ModelEntry) -> None:
    """Add a model kind (a plug-in, or a test's tiny model)."""
    if (entry.member is None) == (entry.population is None):
        raise ValueError("a model entry has exactly one of member= or population=")
    MODELS[kind] = entry


def model_entry(kind: str) -> ModelEntry:
    """The entry registered as ``kind``, or the ``ModelEntry`` that ``module:attribute`` names."""
    if kind in MODELS:
        return MODELS[kind]
    if ":" not in kind:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(
            f"unknown model kind {kind!r}; known: {known}, or <module>:<attribute> naming a "
            "ModelEntry"
        )
    module, _, attribute = kind.partition(":")
    try:
        entry = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"model kind {kind!r}: cannot import it ({err})") from None
    if not isinstance(entry, ModelEntry):
        raise ConfigError(f"model kind {kind!r} is a {type(entry).__name__}, not a ModelEntry")
    return entry


def builder_params(model: Mapping[str, Any]) -> dict[str, Any]:
    """A model section's keys for its builder: all but those every kind shares (``kind`` and
    the task's, ``config.schema.Model``)."""
    shared = {f.name for f in fields(Model)}
    return {k: v for k, v in model.items() if k not in shared}


def check_params(kind: str, params: Mapping[str, Any]) -> None:
    """ConfigError unless the builder of ``kind`` takes exactly these YAML keys (a key it does
    not take, or one it needs and the YAML lacks)."""
    entry = model_entry(kind)
    builder = entry.population or entry.member
    leading = (None, None) if entry.population is not None else (None, False, None)
    try:
        inspect.signature(builder).bind(*leading, **params)
    except TypeError as err:
        raise ConfigError(f"model (kind {kind}, configs/model/): {err}") from None


def check_batchnorm(kind: str, batchnorm: Sequence[bool]) -> None:
    """One line if a member asks for BN of a model kind that has no BN variant."""
    if any(batchnorm) and not model_entry(kind).batchnorm:
        raise bad("members.batchnorm", list(batchnorm), f"[false]: the {kind} model has no BN")


def build_population(
    kind: str, params: dict[str, Any], members: Sequence[MemberSpec], ctx: ModelContext
) -> Population:
    """The population of ``members`` for a model of ``kind`` configured by ``params``."""
    entry = model_entry(kind)
    check_batchnorm(kind, [m.batchnorm for m in members])
    check_params(kind, params)
    if entry.population is not None:
        return entry.population(members, ctx, **params)
    nets = []
    for m in members:
        # Seed r gives the same initial weights to every activation and BN variant (U12).
        torch.manual_seed(m.seed)
        unit_ctx = replace(ctx, unit=m.activation.name)
        nets.append(entry.member(m.activation.factory(), m.batchnorm, unit_ctx, **params))
    return MemberList(nets)
