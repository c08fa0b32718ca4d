"""Every configuration value checked, with its type, before any data is read or folder written.

``validate_config`` walks the resolved config section by section against the tables below and
raises ``ConfigError`` with one line naming the key, the value and what is allowed, e.g.

    train.batch_size='abc': expected an integer >= 1

Keys a section does not know (added with Hydra's ``+key=value``) are refused the same way, so a
typo never trains silently with the default. Checks that need several keys at once (schedule
lengths, dropout rates per stack, the conv net's shapes, BN variants of the model) come after
the per-key checks; everything that needs the data itself stays with the data loaders.

A key added to ``configs/`` needs its line here: ``tests/test_faults.py::
test_every_shipped_config_is_valid`` fails until it has one.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elurepro.errors import ConfigError

Check = Callable[[str, Any], None]


def show(value: Any) -> str:
    """A value as the user would write it on the command line (strings quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str).replace('"', "'")
    return repr(value)


def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={show(value)}: expected {allowed}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


# ------------------------------------------------------------------ single values
def integer(low: int = 0, null: str | None = None) -> Check:
    """An int >= ``low``; ``null`` says what null means where it is allowed."""
    allowed = f"an integer >= {low}" + (f", or null ({null})" if null else "")

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not _is_int(value) or value < low:
            raise _bad(key, value, allowed)

    return check


def number(
    low: float = 0.0, low_open: bool = False, high: float | None = None, null: str | None = None
) -> Check:
    """A finite number in ``[low, high)`` (``(low, high)`` with ``low_open``)."""
    if high is not None:
        allowed = f"a number in {'(' if low_open else '['}{low:g}, {high:g})"
    else:
        allowed = f"a number {'>' if low_open else '>='} {low:g}"
    allowed += f", or null ({null})" if null else ""

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        ok = _is_number(value) and (value > low if low_open else value >= low)
        if not ok or (high is not None and value >= high):
            raise _bad(key, value, allowed)

    return check


POSITIVE = number(0.0, low_open=True)
PROBABILITY = number(0.0, high=1.0)  # dropout rates, momentum: [0, 1)


def boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(key, value, "true or false")


def choice(*options: str) -> Check:
    def check(key: str, value: Any) -> None:
        if value not in options:
            raise _bad(key, value, f"one of {', '.join(options)}")

    return check


def text(null: str | None = None, pattern: str | None = None, what: str = "") -> Check:
    allowed = what or "a non-empty string"
    allowed += f", or null ({null})" if null else ""

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not isinstance(value, str) or not value.strip():
            raise _bad(key, value, allowed)
        if pattern is not None and not re.fullmatch(pattern, value):
            raise _bad(key, value, allowed)

    return check


def items(
    item: Check,
    what: str,
    min_len: int = 0,
    length: int | None = None,
    null: str | None = None,
    distinct: bool = False,
) -> Check:
    """A list whose every element passes ``item`` (checked as ``key[i]``)."""
    allowed = f"a list of {what}"
    if length is not None:
        allowed = f"a list of {length} {what}"
    elif min_len == 1:
        allowed = f"a non-empty list of {what}"
    elif min_len:
        allowed = f"a list of at least {min_len} {what}"
    allowed += f", or null ({null})" if null else ""

    def check(key: str, value: Any) -> None:
        if value is None and null:
            return
        if not isinstance(value, list):
            raise _bad(key, value, allowed)
        if len(value) < min_len or (length is not None and len(value) != length):
            raise _bad(key, value, allowed)
        for i, element in enumerate(value):
            item(f"{key}[{i}]", element)
        if distinct and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            raise _bad(key, value, f"{allowed}, without repeats")

    return check


def _device(key: str, value: Any) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
        raise _bad(key, value, "auto, cpu, cuda or cuda:<index>")


def _worker(key: str, value: Any) -> None:
    if value is None or (_is_int(value) and value >= 0):
        return
    if isinstance(value, str) and value.strip():
        return
    raise _bad(key, value, "null, an integer >= 0 or a label")


def _activation(key: str, value: Any) -> None:
    from elurepro.activations import parse_activation

    if not (isinstance(value, str) or isinstance(value, Mapping)):
        raise _bad(key, value, "an activation name or {name: <unit or module:attribute>, ...}")
    try:
        parse_activation(value)
    except ConfigError as err:
        raise ConfigError(f"{key}={show(value)}: {err}") from None


def _dropout_phase(key: str, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _bad(key, value, "{start: <in train.unit>, rates: [...], all_layers: bool}")
    _section(
        key,
        value,
        {
            "start": POSITIVE,
            "rates": items(PROBABILITY, "rates in [0, 1)", min_len=1),
            "all_layers": boolean,
        },
        required=("start", "rates"),
    )


# ------------------------------------------------------------------ sections
TOP: dict[str, Check] = {
    "name": text(pattern=r"[A-Za-z0-9_.-]+", what="an experiment id (letters, digits, _ . -)"),
    "runs_dir": text(what="a folder"),
    "cache_dir": text(null="the default cache", what="a folder"),
    "device": _device,
    "progress": boolean,
    "worker": _worker,
}
SECTIONS: dict[str, dict[str, Check]] = {
    "members": {
        "activations": items(_activation, "activations", min_len=1),
        "batchnorm": items(boolean, "true/false", min_len=1, distinct=True),
        "lrs": items(POSITIVE, "learning rates > 0", min_len=1, null="[optim.lr]", distinct=True),
        "seeds": items(integer(0), "integers >= 0", min_len=1, distinct=True),
    },
    "population": {"max_members": integer(1, null="all members at once")},
    "store": {"stale_after_s": POSITIVE, "heartbeat_s": POSITIVE, "poll_s": POSITIVE},
    "train": {
        "unit": choice("epoch", "step"),
        "length": POSITIVE,
        "batch_size": integer(1),
        "log_every": POSITIVE,
        "eval_every": POSITIVE,
        "act_every": number(0.0, low_open=True, null="no activation monitor"),
        "eval_batch_size": integer(1),
        "checkpoint_minutes": POSITIVE,
    },
    "optim": {
        "lr": POSITIVE,
        "momentum": PROBABILITY,
        "weight_decay": number(0.0),
        "milestones": items(POSITIVE, "numbers > 0"),
        "lr_values": items(POSITIVE, "learning rates > 0"),
        "dropout_phases": items(_dropout_phase, "dropout phases"),
        "schedule": text(null="no named reading", what="the schedule's name"),
    },
    "monitor": {"theory": boolean, "theory_images": integer(1)},
    "execution": {
        "channels_last": boolean,
        "compile": boolean,
        "compile_mode": choice("default", "reduce-overhead", "max-autotune"),
        "bf16": boolean,
        "tf32": boolean,
    },
    "budget": {
        "name": text(pattern=r"[A-Za-z0-9_.-]+", what="a budget name (letters, digits, _ . -)"),
        "scale": POSITIVE,
        "max_steps": integer(1, null="no cap"),
        "stop_after": integer(1, null="run to the end"),
        "max_seeds": integer(1, null="every seed"),
        "train_subset": integer(1, null="every training image"),
        "eval_subset": integer(1, null="every evaluation image"),
        "width": POSITIVE,
        "resize": integer(1, null="data.resize"),
        "crop": integer(1, null="data.crop"),
    },
}
_DATA_COMMON: dict[str, Check] = {
    "name": choice("mnist", "cifar10", "cifar100", "imagenet"),
    "root": text(null="$ELUREPRO_DATA, else ~/.cache/elurepro/data", what="a folder"),
    "download": boolean,
}
_CIFAR: dict[str, Check] = {
    "gcn_scale": POSITIVE,
    "zca_filter_bias": number(0.0),
    "pad": integer(0),
}
DATA: dict[str, dict[str, Check]] = {
    "mnist": {"val_size": integer(0), "monitor_size": integer(1), "monitor_seed": integer(0)},
    "cifar10": _CIFAR,
    "cifar100": _CIFAR,
    "imagenet": {
        "resize": integer(1),
        "crop": integer(1),
        "val_subset": integer(1),
        "subset_seed": integer(0),
        "workers": integer(0, null="free cores - 1, at most 8"),
    },
}
_INTS = "integers >= 1"
MODEL: dict[str, dict[str, Check]] = {
    "mlp": {"sizes": items(integer(1), _INTS, min_len=2)},
    "convnet": {
        "in_channels": integer(1),
        "input_size": integer(1),
        "stacks": items(lambda k, v: None, "stacks", min_len=1),  # parsed below
        "dropout": items(PROBABILITY, "rates in [0, 1)"),
        "convention": choice("A", "B", "C", "V"),
        "dropout_all_layers": boolean,
        "init_fan": choice("fan_in", "fan_out"),
        "init_gain": POSITIVE,
        "score_pool": choice("max", "avg"),
    },
    "spp": {
        "in_channels": integer(1),
        "conv1": items(integer(0), "integers (channels, kernel, stride, pad)", length=4),
        "conv_stacks": items(
            items(integer(1), "integers (layers, channels, kernel)", length=3),
            "stacks",
            min_len=1,
        ),
        "spp_levels": items(integer(1), _INTS, min_len=1),
        "pool_before_spp": boolean,
        "fc": items(integer(1), _INTS),
        "fc_dropout": PROBABILITY,
        "init_gain": POSITIVE,
        "classifier_gain": number(0.0, low_open=True, null="init_gain like every other layer"),
    },
}
_TASK: dict[str, Check] = {
    "kind": text(what="a model kind"),
    "task": choice("classification", "reconstruction"),
    "top5": boolean,
    "pixel_reduction": choice("mean", "sum"),
}
# Classes of the data sets whose class count is known before they are read.
_NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}


def _section(
    name: str,
    values: Any,
    table: Mapping[str, Check],
    required: Sequence[str] | None = None,
    extra: Sequence[str] = (),
) -> None:
    if not isinstance(values, Mapping):
        raise _bad(name, values, f"a section with keys {', '.join(table)}")
    unknown = [k for k in values if k not in table and k not in extra]
    if unknown:
        raise ConfigError(
            f"{name}.{unknown[0]}: not a key of {name} (known: {', '.join([*table, *extra])})"
        )
    for key in table if required is None else required:
        if key not in values:
            raise ConfigError(f"{name}.{key} is missing")
    for key, value in values.items():
        if key in table:
            table[key](f"{name}.{key}", value)


def _resolved(cfg: DictConfig) -> dict[str, Any]:
    try:
        tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "the config"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}: {first}") from None
    return tree


def validate_config(cfg: DictConfig) -> None:
    """ConfigError (one line) for the first value of ``cfg`` that is not allowed."""
    tree = _resolved(cfg)
    tree.pop("hydra", None)
    sections = list(SECTIONS)
    known = [*TOP, *sections, "data", "model"]
    for key in tree:
        if key not in known:
            raise ConfigError(f"{key}: not a key of the config (known: {', '.join(known)})")
    for key, check in TOP.items():
        if key not in tree:
            raise ConfigError(f"{key} is missing from the config")
        check(key, tree[key])
    for name in sections:
        _section(name, tree.get(name), SECTIONS[name], required=list(SECTIONS[name]))
    _check_data(tree["data"])
    _check_model(tree["model"], tree["data"]["name"])
    _check_together(tree)


def _check_data(data: Any) -> None:
    if not isinstance(data, Mapping) or "name" not in data:
        raise _bad("data", data, "a data section with a name (data=mnist|cifar10|...)")
    _DATA_COMMON["name"]("data.name", data["name"])
    table = {**_DATA_COMMON, **DATA[data["name"]]}
    _section("data", data, table, required=list(table))
    if data["name"] == "imagenet" and data["crop"] > data["resize"]:
        raise ConfigError(
            f"data.crop={data['crop']}: expected at most data.resize ({data['resize']})"
        )


def _check_model(model: Any, data_name: str) -> None:
    from elurepro.models.registry import model_entry

    if not isinstance(model, Mapping) or "kind" not in model:
        raise _bad("model", model, "a model section with a kind (model=mlp|convnet|...)")
    kind = model["kind"]
    if not isinstance(kind, str):
        raise _bad("model.kind", kind, "a registered model kind or <module>:<attribute>")
    try:  # one line naming the known kinds, or the import that failed
        entry = model_entry(kind)
    except ConfigError as err:
        raise ConfigError(f"model.kind={show(kind)}: {err}") from None
    own = MODEL.get(kind, {})
    # A kind registered by a plug-in is checked by its builder's signature only.
    params = {k: v for k, v in model.items() if k not in _TASK}
    builder = entry.population or entry.member
    leading = (None, None) if entry.population is not None else (None, False, None)
    try:
        inspect.signature(builder).bind(*leading, **params)
    except TypeError as err:
        raise ConfigError(f"model (kind {kind}, configs/model/): {err}") from None
    extra = [] if kind in MODEL else list(params)
    _section("model", model, {**_TASK, **own}, required=["kind", "task"], extra=extra)


def _check_together(tree: dict[str, Any]) -> None:
    """Checks that involve several keys."""
    train, optim, model, budget = tree["train"], tree["optim"], tree["model"], tree["budget"]
    data = tree["data"]
    store = tree["store"]
    if store["heartbeat_s"] >= store["stale_after_s"]:
        raise ConfigError(
            f"store.heartbeat_s={show(store['heartbeat_s'])}: expected less than "
            f"store.stale_after_s ({show(store['stale_after_s'])}), or live claims go stale"
        )
    if train["unit"] == "step":
        for key in ("length", "log_every", "eval_every", "act_every"):
            value = train[key]
            if value is not None and not _is_int(value):
                raise _bad(f"train.{key}", value, "a whole number of steps (train.unit=step)")
        for i, m in enumerate(optim["milestones"]):
            if not _is_int(m):
                raise _bad(f"optim.milestones[{i}]", m, "a whole number of steps (train.unit=step)")
    milestones = optim["milestones"]
    if len(optim["lr_values"]) != len(milestones):
        raise _bad(
            "optim.lr_values",
            optim["lr_values"],
            f"one learning rate per milestone ({len(milestones)}: optim.milestones)",
        )
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise _bad("optim.milestones", milestones, "increasing numbers > 0")
    _check_shapes(model, data)
    _check_dropout(model, optim["dropout_phases"])
    _check_populations(tree)
    if budget["resize"] is not None and budget["crop"] is not None:
        if budget["crop"] > budget["resize"]:
            raise _bad("budget.crop", budget["crop"], f"at most budget.resize ({budget['resize']})")


def _check_dropout(model: Mapping[str, Any], phases: list[Mapping[str, Any]]) -> None:
    kind = model["kind"]
    if kind == "convnet":
        stacks = len(model["stacks"])
        if len(model.get("dropout", [])) != stacks:
            raise _bad("model.dropout", model["dropout"], f"{stacks} rates, one per stack")
        for i, phase in enumerate(phases):
            if len(phase["rates"]) != stacks:
                raise _bad(
                    f"optim.dropout_phases[{i}].rates", phase["rates"], f"{stacks} rates (stacks)"
                )
    elif kind == "mlp":
        for i, phase in enumerate(phases):
            if any(phase["rates"]):
                raise _bad(
                    f"optim.dropout_phases[{i}].rates", phase["rates"], "zeros (MLPs: no dropout)"
                )


def _check_shapes(model: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """Shapes fixed by the data set: the MLP's ends, the conv net's layer maps."""
    name, kind = data["name"], model["kind"]
    if kind == "mlp" and name == "mnist":
        sizes = model["sizes"]
        last = 784 if model["task"] == "reconstruction" else 10
        if sizes[0] != 784 or sizes[-1] != last:
            raise _bad(
                "model.sizes", sizes, f"784 inputs and {last} outputs for MNIST ({model['task']})"
            )
    if kind == "convnet":
        from elurepro.models.convnet import layer_shapes, parse_stack, with_classes

        for i, stack in enumerate(model["stacks"]):
            try:
                parse_stack(stack)
            except ConfigError as err:
                raise ConfigError(f"model.stacks[{i}]={show(stack)}: {err}") from None
        size, channels = model.get("input_size"), model.get("in_channels")
        if name in _NUM_CLASSES and size is not None and channels is not None:
            stacks = with_classes(model["stacks"], _NUM_CLASSES[name])
            try:  # a map that vanishes in some layer, named by the shape table
                layer_shapes(stacks, channels, size, model.get("convention", "A"))
            except ConfigError as err:
                raise ConfigError(f"model.stacks: {err}") from None


def _check_populations(tree: dict[str, Any]) -> None:
    """Members and how they are grouped (expands the members as the command will)."""
    from elurepro.members import chunk, expand_members
    from elurepro.models.registry import model_entry

    m, optim = tree["members"], tree["optim"]
    kind = tree["model"]["kind"]
    if any(m["batchnorm"]) and not model_entry(kind).batchnorm:
        raise _bad("members.batchnorm", m["batchnorm"], f"[false]: the {kind} model has no BN")
    members = expand_members(m["activations"], m["batchnorm"], m["lrs"], m["seeds"], optim["lr"])
    size = tree["population"]["max_members"]
    if size:
        members = sorted(members, key=lambda x: x.seed)
    for group in chunk(members, size):
        if optim["weight_decay"] and len({x.lr for x in group}) > 1:
            raise _bad(
                "optim.weight_decay",
                optim["weight_decay"],
                "0 when a population mixes learning rates (or population.max_members=1)",
            )
