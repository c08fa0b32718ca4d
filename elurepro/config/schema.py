"""The config's schema: every key, its type, default, allowed values and part in a run's identity.

One dataclass per section. ``configs/train.yaml`` merges into ``Config`` (registered in Hydra's
ConfigStore by ``elurepro.config``), each ``configs/data/*.yaml`` into its data set's class; the
YAML files hold only values. A model kind's keys live beside its registry entry
(``elurepro/models/registry.py``). Each field's metadata (``key``) carries

- ``check``: the one-line check of its value (``elurepro/config/checks.py``);
- ``identity``: whether it changes what a member computes, hence its folder
  (``elurepro/store/identity.py``);
- ``added_later``: for a key added after runs existed, the value that computes what those runs
  computed (the key is left out of the identity at that value, present or absent);
- ``only_for_model_kind``: a key only that model kind reads (out of every other's identity).
"""

from __future__ import annotations

from dataclasses import MISSING as NO_DEFAULT
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Literal

from omegaconf import MISSING

from elurepro.config.checks import (
    POSITIVE,
    PROBABILITY,
    Check,
    activation,
    anything,
    boolean,
    choice,
    device,
    integer,
    items,
    number,
    section,
    text,
    worker,
)

NEVER = object()  # ``added_later`` of a key that existed from the start
# The default of a model key that a YAML may leave out: the builder's own default applies
# (model sections are checked, not merged: their keys depend on the kind).
OPTIONAL = object()


def key(
    default: Any,
    check: Check,
    *,
    identity: bool = True,
    added_later: Any = NEVER,
    only_for_model_kind: str | None = None,
) -> Any:
    """A schema field: its default (copied if a list) and its metadata."""
    meta = {
        "check": check,
        "identity": identity,
        "added_later": added_later,
        "only_for_model_kind": only_for_model_kind,
    }
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def part(schema: type, *, identity: bool = True) -> Any:
    """A field that is a section of its own."""
    return field(default_factory=schema, metadata={"identity": identity, "section": schema})


_NAME = r"[A-Za-z0-9_.-]+"


@dataclass
class Members:
    """Every combination is one trained member."""

    # names, or {name: lrelu, alpha: 0.1}; see elurepro/activations.py
    activations: list[Any] = key(["elu"], items(activation, "activations", min_len=1))
    batchnorm: list[bool] = key([False], items(boolean, "true/false", min_len=1, distinct=True))
    # null = [optim.lr]; several = one member per learning rate
    lrs: list[float] | None = key(
        None, items(POSITIVE, "learning rates > 0", min_len=1, null="[optim.lr]", distinct=True)
    )
    # seed r: same initial weights and data order for every activation
    seeds: list[int] = key([0], items(integer(0), "integers >= 0", min_len=1, distinct=True))


@dataclass
class Population:
    # members trained in lockstep by one process (null = all at once)
    max_members: int | None = key(None, integer(1, null="all members at once"))


@dataclass
class Store:
    """The run store's claims (elurepro/store/claims.py)."""

    # a claim not refreshed for this long (its worker died) is taken over
    stale_after_s: float = key(300, POSITIVE)
    heartbeat_s: float = key(30, POSITIVE)  # how often a worker refreshes its claims
    # how often a worker whose remaining members are claimed looks again
    poll_s: float = key(10, POSITIVE)


@dataclass
class Train:
    # the unit of length, intervals and schedule boundaries
    unit: Literal["epoch", "step"] = key("epoch", choice("epoch", "step"))
    length: float = key(1, POSITIVE)
    batch_size: int = key(64, integer(1))
    log_every: float = key(1, POSITIVE)  # training loss
    eval_every: float = key(1, POSITIVE)  # evaluation splits (and a checkpoint)
    act_every: float | None = key(  # mean-activation monitor
        None, number(0.0, low_open=True, null="no activation monitor")
    )
    eval_batch_size: int = key(1000, integer(1), identity=False)
    checkpoint_minutes: float = key(10, POSITIVE, identity=False)


@dataclass
class DropoutPhase:
    """From ``start`` (in train.unit) on, these dropout rates (per stack)."""

    start: float = key(MISSING, POSITIVE)
    rates: list[float] = key(MISSING, items(PROBABILITY, "rates in [0, 1)", min_len=1))
    all_layers: bool = key(False, boolean)


@dataclass
class Optim:
    lr: float = key(0.01, POSITIVE)
    momentum: float = key(0.0, PROBABILITY)
    weight_decay: float = key(0.0, number(0.0))  # on conv / linear weights only (U4)
    # in train.unit; the learning rate becomes lr_values[i] at milestones[i]
    milestones: list[float] = key([], items(POSITIVE, "numbers > 0"))
    lr_values: list[float] = key([], items(POSITIVE, "learning rates > 0"))
    dropout_phases: list[DropoutPhase] = key([], items(section(DropoutPhase), "dropout phases"))
    # The name of the schedule's reading, where the paper allows several; its milestones and
    # phases are what it computes.
    schedule: str | None = key(
        None, text(null="no named reading", what="the schedule's name"), identity=False
    )


@dataclass
class Monitor:
    """Measured at train.act_every, beside the mean activations."""

    # §3 diagnostics per layer (elurepro/theory.py): incoming mean, q, bias shift, gradient vs
    # unit natural gradient; costs a few % of a run
    theory: bool = key(False, boolean, added_later=False)
    # the fixed batch they are measured on: the monitor subset's first images
    theory_images: int = key(1000, integer(1), added_later=1000)


@dataclass
class Budget:
    """Every budget's keys; a budget file (configs/budget/) sets what differs. Only budget=paper
    on the official data is comparable with the paper (docs/protocol.md, "Budgets and
    comparability")."""

    name: str = key(  # in the folder path already
        MISSING, text(pattern=_NAME, what="a budget name (letters, digits, _ . -)"), identity=False
    )
    scale: float = key(1.0, POSITIVE)  # multiplies train.length and every schedule boundary
    # a hard cap on the steps of every population (the schedule shrinks to fit)
    max_steps: int | None = key(None, integer(1, null="no cap"))
    # stop after this many steps of the schedule as it is (nothing shrinks)
    stop_after: int | None = key(None, integer(1, null="run to the end"), added_later=None)
    # only the first N of members.seeds: selects members, computes nothing
    max_seeds: int | None = key(None, integer(1, null="every seed"), identity=False)
    # a fixed random subset of the training images
    train_subset: int | None = key(None, integer(1, null="every training image"))
    # the first N images of each evaluation split
    eval_subset: int | None = key(None, integer(1, null="every evaluation image"))
    # ImageNet SPP net: multiplies every channel count and FC width
    width: float = key(1.0, POSITIVE, only_for_model_kind="spp")
    # ImageNet: null = data.resize / data.crop
    resize: int | None = key(None, integer(1, null="data.resize"), only_for_model_kind="spp")
    crop: int | None = key(None, integer(1, null="data.crop"), only_for_model_kind="spp")


@dataclass
class Execution:
    """How the same mathematics is run (bf16 and tf32 change it: off in every paper config)."""

    channels_last: bool = key(False, boolean, identity=False)
    # torch.compile the population (same mathematics, other rounding)
    compile: bool = key(False, boolean, identity=False)
    # "reduce-overhead" captures the compiled forward and backward as CUDA graphs on a GPU
    # (static shapes: every training batch has the same size); on a CPU it compiles as "default"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = key(
        "default", choice("default", "reduce-overhead", "max-autotune"), identity=False
    )
    bf16: bool = key(False, boolean)  # CHANGES THE MATHEMATICS (bf16 autocast)
    # CUDA: TF32 matmuls and convolutions; CHANGES THE MATHEMATICS too
    tf32: bool = key(False, boolean, added_later=False)


# ------------------------------------------------------------------ data sets
_ROOT = text(null="$ELUREPRO_DATA, else ~/.cache/elurepro/data", what="a folder")
DATA_SETS = ("mnist", "cifar10", "cifar100", "imagenet")


@dataclass
class Data:
    """Keys of every data set; its file (configs/data/) gives their values."""

    name: str = key(MISSING, choice(*DATA_SETS))
    root: str | None = key(MISSING, _ROOT, identity=False)  # where the files are, not which
    download: bool = key(MISSING, boolean, identity=False)


@dataclass
class Mnist(Data):
    val_size: int = key(MISSING, integer(0))
    monitor_size: int = key(MISSING, integer(1))
    monitor_seed: int = key(MISSING, integer(0))


@dataclass
class Cifar(Data):
    gcn_scale: float = key(MISSING, POSITIVE)
    zca_filter_bias: float = key(MISSING, number(0.0))
    pad: int = key(MISSING, integer(0))


@dataclass
class ImageNet(Data):
    resize: int = key(MISSING, integer(1))
    crop: int = key(MISSING, integer(1))
    val_subset: int = key(MISSING, integer(1))
    subset_seed: int = key(MISSING, integer(0))
    # DataLoader processes per training process
    workers: int | None = key(MISSING, integer(0, null="free cores - 1, at most 8"), identity=False)


DATA: dict[str, type[Data]] = {
    "mnist": Mnist,
    "cifar10": Cifar,
    "cifar100": Cifar,
    "imagenet": ImageNet,
}
# Classes of the data sets whose class count is known before they are read.
CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}


# ------------------------------------------------------------------ models
@dataclass
class Model:
    """Keys of every model kind; a kind adds its own (its ``ModelEntry.schema``)."""

    kind: str = key(MISSING, text(what="a model kind"))
    task: Literal["classification", "reconstruction"] = key(
        MISSING, choice("classification", "reconstruction")
    )
    top5: bool = key(OPTIONAL, boolean)  # logs */top5_error besides */error
    # reconstruction: the per-pixel BCE averaged ("mean") or summed over the pixels
    pixel_reduction: Literal["mean", "sum"] = key(OPTIONAL, choice("mean", "sum"))


# ------------------------------------------------------------------ the whole config
@dataclass
class Config:
    name: str = key(  # the experiment id, set by the experiment file
        MISSING, text(pattern=_NAME, what="an experiment id (letters, digits, _ . -)")
    )
    runs_dir: str = key("${oc.env:ELUREPRO_RUNS,runs}", text(what="a folder"), identity=False)
    # derived data (whitened CIFAR, mean images); null: ~/.cache/elurepro/derived or
    # $ELUREPRO_CACHE
    cache_dir: str | None = key(
        None, text(null="the default cache", what="a folder"), identity=False
    )
    # auto = CUDA if present, else cpu; or cpu, cuda, cuda:1
    device: str = key("auto", device, identity=False)
    progress: bool = key(True, boolean, identity=False)
    # which members a command asked for, how they are grouped and shared among workers: never
    # what one member computes
    members: Members = part(Members, identity=False)
    population: Population = part(Population, identity=False)
    # a label for one of several workers on one sweep (e.g. worker=range(8) with a launcher);
    # workers share the sweep through claims either way
    worker: int | str | None = key(None, worker, identity=False)
    store: Store = part(Store, identity=False)
    train: Train = part(Train)
    optim: Optim = part(Optim)
    monitor: Monitor = part(Monitor)
    budget: Budget = part(Budget)
    execution: Execution = part(Execution)
    # Checked against DATA[data.name] and the model kind's schema (their keys depend on them).
    data: Any = key(MISSING, anything)
    model: Any = key(MISSING, anything)


def sections(schema: type) -> dict[str, type]:
    """The fields of ``schema`` that are sections of their own -> their schema."""
    return {f.name: f.metadata["section"] for f in fields(schema) if "section" in f.metadata}


def untyped(schema: type) -> type:
    """``schema`` as OmegaConf should see it: the same keys and defaults, every value ``Any``.

    OmegaConf would convert what the checks refuse ('yes' and 1 to true, '3' to 3) and write
    YAML's 300 as 300.0 for a float, which changes a run's identity; the checks do the typing.
    """
    specs = []
    for f in fields(schema):
        if "section" in f.metadata:
            inner = untyped(f.metadata["section"])
            specs.append((f.name, inner, field(default_factory=inner)))
        else:
            default = (
                {"default_factory": f.default_factory}
                if f.default_factory is not NO_DEFAULT
                else {"default": f.default}
            )
            specs.append((f.name, Any, field(**default)))
    return make_dataclass(schema.__name__, specs)
