"""A sweep's folders: one per member, one per population checkpoint, and the sweep's record.

    <sweep>/sweep.json                    the sweep's identity (experiment, data, budget, config)
    <sweep>/<group>/s<seed>/              one member: member.json, metrics.jsonl, summary.json,
                                          provenance.json, TensorBoard events, claim.lock
    <sweep>/_populations/<key>/           checkpoint.pt of members trained together in lockstep

See ``identity.py`` for how ``<sweep>`` is named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elurepro.checkpoint import write_json
from elurepro.errors import ElureproError
from elurepro.members import MemberSpec
from elurepro.store.identity import SweepIdentity, member_key

POPULATIONS = "_populations"


@dataclass(frozen=True)
class Sweep:
    root: Path
    identity: SweepIdentity

    @classmethod
    def at(cls, runs_dir: str | Path, identity: SweepIdentity) -> Sweep:
        return cls(Path(runs_dir) / identity.experiment / identity.folder, identity)

    def member_dir(self, member: MemberSpec) -> Path:
        return self.root / member.folder

    def member_key(self, member: MemberSpec) -> str:
        return member_key(self.identity, member.identity())

    def finished(self, member: MemberSpec) -> bool:
        """Whether the member has a summary (finished or diverged): never retrained."""
        folder = self.member_dir(member)
        if not (folder / "summary.json").exists():
            return False
        self.check_owner(member)
        return True

    def check_owner(self, member: MemberSpec) -> None:
        """ElureproError if the member's folder holds another member (a hand-made copy, or a
        label that two specifications share)."""
        path = self.member_dir(member) / "member.json"
        try:
            found = json.loads(path.read_text()).get("key")
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            raise ElureproError(f"{path} is unreadable ({err}); remove its folder") from None
        if found != self.member_key(member):
            raise ElureproError(
                f"{path.parent} holds another member (key {found}, expected "
                f"{self.member_key(member)}); move that folder away"
            )

    def population_dir(self, members: Sequence[MemberSpec]) -> Path:
        keys = sorted(self.member_key(m) for m in members)
        digest = hashlib.sha256(" ".join(keys).encode()).hexdigest()[:12]
        return self.root / POPULATIONS / f"{len(members)}-{digest}"

    def write_record(self, config: dict[str, Any], data: dict[str, Any]) -> None:
        """sweep.json: what every member here shares (written once, by the first worker)."""
        path = self.root / "sweep.json"
        if path.exists():
            return
        i = self.identity
        write_json(
            path,
            {
                "key": i.key,
                "experiment": i.experiment,
                "budget": i.budget,
                "config_key": i.config,
                "data": data,
                "config": config,
            },
        )
