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

A configuration key added after runs existed must not move them: ``ADDED_LATER`` lists such keys
with the value that computes what those runs computed; at that value the key is left out of the
hash, whether present or absent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Top-level keys that say where, how visibly or by whom a run happens, or which members a command
# asked for: never part of a member's identity.
NOT_MATHEMATICS = (
    "runs_dir",
    "cache_dir",
    "device",
    "progress",
    "population",
    "members",
    "worker",
    "store",
    "hydra",
)
NOT_MATHEMATICS_NESTED = {
    "data": ("root", "download", "workers"),
    "train": ("checkpoint_minutes", "eval_batch_size"),
    "execution": ("channels_last", "compile", "compile_mode"),
    # The name of a schedule's reading; its milestones and phases are what it computes.
    "optim": ("schedule",),
    # The budget's name is in the folder path; max_seeds only selects members.
    "budget": ("name", "max_seeds"),
}
# Budget keys that only the SPP net reads: out of every other model's identity.
SPP_ONLY_BUDGET = ("width", "resize", "crop")
# (section, key) -> the value that computes what runs made before the key existed computed.
ADDED_LATER: dict[tuple[str, str], Any] = {
    ("execution", "tf32"): False,
    ("monitor", "theory"): False,
    ("monitor", "theory_images"): 1000,
    ("budget", "stop_after"): None,
    ("model", "init_fan"): "fan_in",
    ("model", "init_gain"): 2.0,
    ("model", "score_pool"): "max",
    ("model", "classifier_gain"): None,
}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def mathematics(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (plain dict) that changes what a member computes."""
    tree = json.loads(json.dumps(config, default=str))  # a deep, plain copy
    for key in NOT_MATHEMATICS:
        tree.pop(key, None)
    for section, keys in NOT_MATHEMATICS_NESTED.items():
        for key in keys:
            (tree.get(section) or {}).pop(key, None)
    if (tree.get("model") or {}).get("kind") != "spp":
        for key in SPP_ONLY_BUDGET:
            (tree.get("budget") or {}).pop(key, None)
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
