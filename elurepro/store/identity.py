"""Run identity: which folder holds a member's results, derived from what the member computes.

A member's folder is

    <runs_dir>/<experiment>/<data>-<budget>/d<fingerprint>-c<config>/<group>/s<seed>/

- ``d<fingerprint>``: the first 8 hex digits of the data's fingerprint (the checksums of the files
  read, not their path), so runs on different data never share a folder;
- ``c<config>``: 8 hex digits of the hash of the resolved configuration *that changes the
  mathematics*: everything except where and how visibly a run happens (paths, device, progress
  bars, loader workers, checkpoint interval), how members are grouped or shared among workers
  (``population``, ``worker``, ``store``), and which members were asked for (``members``);
- ``<group>/s<seed>``: the member's own specification, its unit with every parameter that differs
  from the registry's default, ``+bn``, ``-lr<lr>`` where the sweep compares learning rates or the
  member's differs from ``optim.lr``, and its seed.

So the folder depends on nothing about the rest of the sweep: re-running any subset of a sweep, on
any worker, finds the members already done. ``member_key`` (stored in ``member.json``) is the full
hash behind the folder name and is checked on every use.

Which keys change the mathematics is said once, in the schema (``elurepro/config/schema.py``,
each field's ``identity`` and ``only_for_model_kind``; a model kind's keys beside its registry
entry). A configuration key added after runs existed must not move them: its field's
``added_later`` is the value that computes what those runs computed (``ADDED_LATER`` collects
them); at that value the key is left out of the hash, whether present or absent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from elurepro.config.schema import DATA, NEVER, Config, sections


def _schemas(tree: Mapping[str, Any]) -> dict[str, type]:
    """Section name -> its schema, for the sections of ``tree`` (the data set's and the model
    kind's where they are known)."""
    from elurepro.models.registry import MODELS

    out = sections(Config)
    name = (tree.get("data") or {}).get("name")
    if name in DATA:
        out["data"] = DATA[name]
    entry = MODELS.get((tree.get("model") or {}).get("kind"))
    if entry is not None and entry.schema is not None:
        out["model"] = entry.schema
    return out


def _added_later() -> dict[tuple[str, str], Any]:
    """(section, key) -> the value that computes what runs made before the key existed
    computed, over every section, data set and registered model kind."""
    from elurepro.models.registry import MODELS

    schemas = [*sections(Config).items(), *(("data", s) for s in DATA.values())]
    schemas += [("model", e.schema) for e in MODELS.values() if e.schema is not None]
    out: dict[tuple[str, str], Any] = {}
    for section, schema in schemas:
        for f in fields(schema):
            if f.metadata.get("added_later", NEVER) is not NEVER:
                out[(section, f.name)] = f.metadata["added_later"]
    return out


# A model key's old value is the same for every kind that has the key (checked by the tests),
# so a key added later is left out whichever kind the config is.
ADDED_LATER = _added_later()


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def mathematics(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (plain dict) that changes what a member computes."""
    tree = json.loads(json.dumps(config, default=str))  # a deep, plain copy
    tree.pop("hydra", None)  # Hydra's own node, where a command composes with it
    kind = (tree.get("model") or {}).get("kind")
    for f in fields(Config):
        if not f.metadata["identity"]:
            tree.pop(f.name, None)
    for section, schema in _schemas(tree).items():
        part = tree.get(section)
        if not isinstance(part, dict):
            continue
        for f in fields(schema):
            only = f.metadata["only_for_model_kind"]
            if not f.metadata["identity"] or (only is not None and only != kind):
                part.pop(f.name, None)
    for (section, key), default in ADDED_LATER.items():
        part = tree.get(section)
        if isinstance(part, dict) and part.get(key, default) == default:
            part.pop(key, None)
            if not part:  # a section added later, all at its old values
                tree.pop(section)
    return tree


def config_key(config: Mapping[str, Any]) -> str:
    """Hash of the configuration's mathematics (16 hex digits)."""
    return _digest(mathematics(config))[:16]


@dataclass(frozen=True)
class SweepIdentity:
    """What every member of one sweep shares: experiment, budget, data and configuration."""

    experiment: str
    data_name: str
    budget: str
    fingerprint: str
    config: str  # config_key(...)

    @property
    def key(self) -> str:
        return _digest(
            [self.experiment, self.data_name, self.budget, self.fingerprint, self.config]
        )[:16]

    @property
    def folder(self) -> str:
        """``<data>-<budget>/d<fp8>-c<cfg8>``, relative to ``<runs_dir>/<experiment>``."""
        return f"{self.data_name}-{self.budget}/d{self.fingerprint[:8]}-c{self.config[:8]}"


def member_key(sweep: SweepIdentity, spec: Mapping[str, Any]) -> str:
    """Full identity of one member: its sweep and its own specification (16 hex digits)."""
    return _digest([sweep.key, dict(spec)])[:16]
