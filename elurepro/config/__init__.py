"""The config's schema (``schema.py``) and the checks of its values (``checks.py``).

Importing this package registers the schema in Hydra's ConfigStore, where ``configs/train.yaml``
(``schema`` in its defaults) and every ``configs/data/*.yaml`` (``/schema_data_<set>``) find it.
``elurepro/__init__.py`` imports it, so every way of composing the configs has it.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from elurepro.config.schema import DATA, Config, untyped


def register() -> None:
    """Put the schema into Hydra's ConfigStore (again: the store is a process-wide singleton)."""
    store = ConfigStore.instance()
    store.store(name="schema", node=untyped(Config))
    for name, schema in DATA.items():
        # Not a config group: --help would list it among the user's choices.
        store.store(name=f"schema_data_{name}", node=untyped(schema))


register()
