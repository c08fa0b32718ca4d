"""Every configuration value checked, before any data is read or folder written.

``validate_config`` walks the resolved config against its schema (``elurepro/config/schema.py``:
each key's check is in its field's metadata; a model kind's keys and constraints are beside its
registry entry) and raises ``ConfigError`` with one line naming the key, the value and what is
allowed, e.g.

    train.batch_size='abc': expected an integer >= 1

Keys the schema does not know (added with Hydra's ``+key=value``) are refused the same way, so a
typo never trains silently with the default. The checks here are those that tie several
sections together; everything that needs the data itself stays with the data loaders.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from elurepro.config.checks import bad, check_section, is_int, show
from elurepro.config.schema import DATA, Config, Model, sections
from elurepro.errors import ConfigError


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
    tree.pop("hydra", None)  # Hydra's own node, where a command composes with it
    top = {f.name: f for f in fields(Config)}
    for key in tree:
        if key not in top:
            raise ConfigError(f"{key}: not a key of the config (known: {', '.join(top)})")
    parts = sections(Config)
    for key, f in top.items():  # single values first, then sections: the order of the lines
        if key not in tree:
            raise ConfigError(f"{key} is missing from the config")
        if key not in parts:
            f.metadata["check"](key, tree[key])
    for name, schema in parts.items():
        check_section(name, tree[name], schema)
    _check_data(tree["data"])
    _check_model(tree["model"], tree["data"]["name"], tree["optim"]["dropout_phases"])
    _check_together(tree)


def _check_data(data: Any) -> None:
    if not isinstance(data, dict) or data.get("name") not in DATA:
        name = data.get("name") if isinstance(data, dict) else data
        raise bad("data.name", name, f"one of {', '.join(DATA)} (data=<name>)")
    check_section("data", data, DATA[data["name"]])
    if data["name"] == "imagenet" and data["crop"] > data["resize"]:
        raise bad("data.crop", data["crop"], f"at most data.resize ({data['resize']})")


def _check_model(model: Any, data: str, phases: list[dict[str, Any]]) -> None:
    from elurepro.models.registry import builder_params, check_params, model_entry

    if not isinstance(model, dict) or "kind" not in model:
        raise bad("model", model, "a model section with a kind (model=mlp|convnet|...)")
    kind = model["kind"]
    if not isinstance(kind, str):
        raise bad("model.kind", kind, "a registered model kind or <module>:<attribute>")
    try:  # one line naming the known kinds, or the import that failed
        entry = model_entry(kind)
    except ConfigError as err:
        raise ConfigError(f"model.kind={show(kind)}: {err}") from None
    params = builder_params(model)
    check_params(kind, params)
    # A kind without a schema (a plug-in's) is checked by its builder's signature only.
    extra = [] if entry.schema else list(params)
    check_section("model", model, entry.schema or Model, extra=extra, required=False)
    if entry.constraints is not None:
        entry.constraints(model, data, phases)


def _check_together(tree: dict[str, Any]) -> None:
    """Checks that tie several sections together: no one section's schema can hold them."""
    train, optim, budget, store = tree["train"], tree["optim"], tree["budget"], tree["store"]
    if store["heartbeat_s"] >= store["stale_after_s"]:
        raise ConfigError(
            f"store.heartbeat_s={show(store['heartbeat_s'])}: expected less than "
            f"store.stale_after_s ({show(store['stale_after_s'])}), or live claims go stale"
        )
    if train["unit"] == "step":
        for key in ("length", "log_every", "eval_every", "act_every"):
            value = train[key]
            if value is not None and not is_int(value):
                raise bad(f"train.{key}", value, "a whole number of steps (train.unit=step)")
        for i, m in enumerate(optim["milestones"]):
            if not is_int(m):
                raise bad(f"optim.milestones[{i}]", m, "a whole number of steps (train.unit=step)")
    milestones = optim["milestones"]
    if len(optim["lr_values"]) != len(milestones):
        raise bad(
            "optim.lr_values",
            optim["lr_values"],
            f"one learning rate per milestone ({len(milestones)}: optim.milestones)",
        )
    if any(b <= a for a, b in zip(milestones, milestones[1:])):
        raise bad("optim.milestones", milestones, "increasing numbers > 0")
    _check_populations(tree)
    if budget["resize"] is not None and budget["crop"] is not None:
        if budget["crop"] > budget["resize"]:
            raise bad("budget.crop", budget["crop"], f"at most budget.resize ({budget['resize']})")


def _check_populations(tree: dict[str, Any]) -> None:
    """Members and how they are grouped (expands the members as the command will)."""
    from elurepro.members import chunk, expand_members
    from elurepro.models.registry import check_batchnorm
    from elurepro.trainer.optimizer import lr_scaling_is_exact

    m, optim = tree["members"], tree["optim"]
    kind = tree["model"]["kind"]
    check_batchnorm(kind, m["batchnorm"])
    members = expand_members(m["activations"], m["batchnorm"], m["lrs"], m["seeds"], optim["lr"])
    size = tree["population"]["max_members"]
    if size:
        members = sorted(members, key=lambda x: x.seed)
    for group in chunk(members, size):
        if not lr_scaling_is_exact([x.lr for x in group], optim["weight_decay"]):
            raise bad(
                "optim.weight_decay",
                optim["weight_decay"],
                "0 when a population mixes learning rates (or population.max_members=1)",
            )
