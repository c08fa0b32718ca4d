"""Model registry: ``model.kind`` in a config -> how to build a population of that model.

A new model is one module (its ``nn.Module``), one entry here, and its YAML files
(``configs/model/<name>.yaml`` with ``kind: <entry>``, and an experiment file). Every key of the
model YAML except ``kind`` and the task's keys is passed to the entry's builder as a keyword.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from elurepro.errors import ConfigError
from elurepro.members import MemberSpec
from elurepro.models.population import MemberList, Population


@dataclass(frozen=True)
class ModelContext:
    """What a builder may need beyond its YAML: facts of the data and the budget."""

    num_classes: int | None  # from the data set
    input_size: int | None  # side of the images the data delivers (None: flat vectors)
    width: float = 1.0  # budget.width: multiplies channel counts (reduced budgets of big nets)


# builder(activation, batchnorm, ctx, **yaml) -> one net
MemberBuilder = Callable[..., nn.Module]
# builder(members, ctx, **yaml) -> a population
PopulationBuilder = Callable[..., Population]


@dataclass(frozen=True)
class ModelEntry:
    member: MemberBuilder | None = None
    population: PopulationBuilder | None = None
    batchnorm: bool = False  # whether members may have a BatchNorm variant


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
    return StackConvNet(
        with_classes(stacks, ctx.num_classes), activation=activation, batchnorm=batchnorm, **params
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
    "mlp": ModelEntry(population=_mlp),
    "convnet": ModelEntry(member=_convnet, batchnorm=True),
    "spp": ModelEntry(member=_spp),
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


def build_population(
    kind: str, params: dict[str, Any], members: Sequence[MemberSpec], ctx: ModelContext
) -> Population:
    """The population of ``members`` for a model of ``kind`` configured by ``params``."""
    entry = model_entry(kind)
    if not entry.batchnorm and any(m.batchnorm for m in members):
        raise ConfigError(
            f"the {kind} model has no BatchNorm variant; set members.batchnorm=[false]"
        )
    builder = entry.population or entry.member
    leading = (members, ctx) if entry.population is not None else (None, False, ctx)
    try:  # a YAML key the builder does not take, or one it needs, is a config error
        inspect.signature(builder).bind(*leading, **params)
    except TypeError as err:
        raise ConfigError(f"model kind {kind!r} (configs/model/): {err}") from None
    if entry.population is not None:
        return entry.population(members, ctx, **params)
    nets = []
    for m in members:
        # Seed r gives the same initial weights to every activation and BN variant (U12).
        torch.manual_seed(m.seed)
        nets.append(entry.member(m.activation.factory(), m.batchnorm, ctx, **params))
    return MemberList(nets)
