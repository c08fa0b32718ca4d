"""The config schema (elurepro/config/schema.py) is the one declaration of every key: its checks,
its part in a run's identity, and a model kind's own keys and constraints beside its entry."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

import pytest
from omegaconf import OmegaConf

from elurepro.assemble.validate import validate_config
from elurepro.config.checks import bad, integer
from elurepro.config.schema import DATA, OPTIONAL, Config, Model, key, sections
from elurepro.errors import ConfigError
from elurepro.models import registry
from elurepro.store.identity import ADDED_LATER, config_key
from tests.hydra_utils import load_config


def _tree(*overrides: str) -> dict[str, Any]:
    return OmegaConf.to_container(load_config(*overrides), resolve=True)


def _other(value: Any) -> Any:
    """A value different from ``value``, of a kind a hash tells apart."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return [*value, value[-1] if value else 1]
    return 7 if value is None else f"{value}x"


def _schemas() -> list[type]:
    models = [e.schema for e in registry.MODELS.values() if e.schema is not None]
    return [Config, *sections(Config).values(), *DATA.values(), *models]


def test_every_key_has_its_check_and_identity_in_the_schema():
    for schema in _schemas():
        for f in fields(schema):
            assert "section" in f.metadata or callable(f.metadata.get("check")), (schema, f.name)
            assert isinstance(f.metadata["identity"], bool), (schema, f.name)


@pytest.mark.parametrize("experiment", ["mnist_meanact", "imagenet_15layer_spp"])
def test_identity_metadata_decides_which_keys_move_a_run(experiment):
    """Changing a key moves the run's folder exactly when its field says ``identity``."""
    tree = _tree(f"experiment={experiment}")
    base = config_key(tree)
    schemas = {**sections(Config), "data": DATA[tree["data"]["name"]]}
    for f in fields(Config):
        if f.name not in schemas and f.name not in ("data", "model"):
            changed = json.loads(json.dumps(tree))
            changed[f.name] = _other(tree[f.name])
            assert (config_key(changed) == base) != f.metadata["identity"], f.name
    for section, schema in schemas.items():
        outer = next(x for x in fields(Config) if x.name == section).metadata["identity"]
        for f in fields(schema):
            changed = json.loads(json.dumps(tree))
            changed[section][f.name] = _other(tree[section][f.name])
            only = f.metadata["only_for_model_kind"]
            counts = outer and f.metadata["identity"]
            counts = counts and only in (None, tree["model"]["kind"])
            assert (config_key(changed) == base) != counts, f"{section}.{f.name}"


def test_keys_added_later_are_those_the_runs_were_made_without():
    """The schema's ``added_later`` values, collected: the list the store was built with."""
    assert ADDED_LATER == {
        ("execution", "tf32"): False,
        ("monitor", "theory"): False,
        ("monitor", "theory_images"): 1000,
        ("budget", "stop_after"): None,
        ("model", "init_fan"): "fan_in",
        ("model", "init_gain"): 2.0,
        ("model", "score_pool"): "max",
        ("model", "classifier_gain"): None,
        ("model", "unit_gains"): None,
    }
    # One old value per key, whichever kind has it (the identity leaves it out for every kind).
    for entry in registry.MODELS.values():
        for f in fields(entry.schema or Model):
            old = f.metadata["added_later"]
            if ("model", f.name) in ADDED_LATER:
                assert old == ADDED_LATER[("model", f.name)], f.name


def test_yaml_values_keep_their_types():
    """OmegaConf does not retype what the YAML says (300 stays an int; 'yes' is no bool)."""
    cfg = load_config("experiment=mnist_meanact", "progress=yes")
    assert type(cfg.train.length) is int and type(cfg.optim.lr) is float
    with pytest.raises(ConfigError, match="progress='yes': expected true or false"):
        validate_config(cfg)


# A model kind of a test's own with its keys and one constraint of its own, beside its entry.
@dataclass
class EvenModel(Model):
    width: int = key(OPTIONAL, integer(1))


def _even(model: dict[str, Any], data: str, phases: list[dict[str, Any]]) -> None:
    if model["width"] % 2:
        raise bad("model.width", model["width"], "an even number (the net halves it)")


def _even_mlp(members: Any, ctx: Any, width: int) -> Any:
    raise AssertionError("not built in these tests")


@pytest.fixture
def even_kind(monkeypatch):
    monkeypatch.setitem(
        registry.MODELS,
        "even",
        registry.ModelEntry(population=_even_mlp, schema=EvenModel, constraints=_even),
    )
    cfg = load_config("experiment=mnist_meanact")
    cfg.model = {"kind": "even", "task": "classification", "width": 4}
    return cfg


def test_a_model_kinds_constraint_is_its_own_one_line(even_kind):
    validate_config(even_kind)
    even_kind.model.width = 3
    with pytest.raises(ConfigError) as caught:
        validate_config(even_kind)
    assert str(caught.value) == "model.width=3: expected an even number (the net halves it)"
    even_kind.model.width = "wide"
    with pytest.raises(ConfigError, match=r"^model.width='wide': expected an integer >= 1$"):
        validate_config(even_kind)


def test_a_model_kinds_schema_refuses_keys_it_does_not_have(even_kind):
    even_kind.model = {"kind": "even", "task": "classification", "width": 4, "sizes": [784, 10]}
    with pytest.raises(ConfigError) as caught:
        validate_config(even_kind)
    assert str(caught.value).startswith("model (kind even, configs/model/):")
    even_kind.model = {"kind": "even", "task": "classification", "width": 4, "top5": "yes"}
    with pytest.raises(ConfigError, match=r"^model.top5='yes': expected true or false$"):
        validate_config(even_kind)
