"""Partition members into sweeps: what one report (or one leaderboard cell) may contain.

A report covers one budget, one data fingerprint and one configuration hash: the trainer's
``sweep`` id in member.json. Table 1 (``cifar_18layer``) spans two data sets; its sweeps
of one budget are reported together when each data set name has exactly one of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from elurepro.analysis.collect import DIVERGED, FINISHED, MemberRun
from elurepro.errors import ElureproError

_RANK = {FINISHED: 0, DIVERGED: 1}


@dataclass
class Sweep:
    """Members that one report may set side by side."""

    members: list[MemberRun]
    keys: list[tuple[str, ...]] = field(default_factory=list)
    suffix: str = ""  # tells apart sweeps whose readable names agree

    @property
    def experiment(self) -> str:
        return self.members[0].experiment

    @property
    def budgets(self) -> list[str]:
        return sorted({m.budget or "unknown" for m in self.members})

    @property
    def datasets(self) -> list[str]:
        return sorted({m.dataset for m in self.members})

    @property
    def fingerprints(self) -> dict[str, str]:
        """data set -> fingerprint (first 8 hex digits; 'unknown' when no file says)."""
        out: dict[str, str] = {}
        for m in sorted(self.members, key=lambda m: m.fingerprint is None):
            out.setdefault(m.dataset, (m.fingerprint or "unknown")[:8])
        return out

    @property
    def folders(self) -> list[str]:
        """The sweep folders its members are in."""
        return sorted({str(m.sweep_folder) for m in self.members})

    @property
    def config_tags(self) -> list[str]:
        return sorted({m.config_tag for m in self.members if m.config_tag})

    @property
    def name(self) -> str:
        """A folder name: ``<data>-<budget>-d<fp8>[-c<cfg8>]`` (data sets joined by '+')."""
        parts = [
            "+".join(self.datasets),
            "+".join(self.budgets),
            "d" + "+".join(self.fingerprints[d] for d in self.datasets),
        ]
        if self.config_tags:
            parts.append("c" + "+".join(self.config_tags))
        return "-".join(parts) + self.suffix

    @property
    def label(self) -> str:
        """One line for the CLI and the index: experiment, data, budget, fingerprint, config."""
        data = ", ".join(f"{d} (data {self.fingerprints[d]})" for d in self.datasets)
        config = f", configuration {'/'.join(self.config_tags)}" if self.config_tags else ""
        return (
            f"{self.experiment}: {data}, budget={'/'.join(self.budgets)}{config}, "
            f"{len(self.members)} member(s)"
        )


def _group(members: Sequence[MemberRun]) -> dict[tuple[str, ...], list[MemberRun]]:
    out: dict[tuple[str, ...], list[MemberRun]] = {}
    for m in members:
        out.setdefault(m.sweep, []).append(m)
    return out


def partition(members: Sequence[MemberRun], multi_dataset: bool = False) -> list[Sweep]:
    """Split one experiment's members into sweeps, in a stable order (data, budget, key).

    With `multi_dataset` (Table 1), sweeps of one budget are merged when no data set name has
    two of them (cifar10 + cifar100); otherwise every sweep stays on its own, since which
    cifar10 sweep belongs with which cifar100 sweep cannot be known.
    """
    by_key = _group(members)
    sweeps = [Sweep(ms, [key]) for key, ms in by_key.items()]
    if multi_dataset:
        by_budget: dict[str, list[Sweep]] = {}
        for s in sweeps:
            by_budget.setdefault("/".join(s.budgets), []).append(s)
        sweeps = []
        for group in by_budget.values():
            names = [d for s in group for d in s.datasets]
            if len(names) == len(set(names)):
                merged = [m for s in group for m in s.members]
                sweeps.append(Sweep(merged, [k for s in group for k in s.keys]))
            else:
                sweeps += group
    sweeps.sort(key=lambda s: (s.datasets, s.budgets, s.keys))
    _unique_names(sweeps)
    return sweeps


def _unique_names(sweeps: list[Sweep]) -> None:
    # Two sweeps whose readable names agree (e.g. sweep ids that differ beyond the 8 hex digits
    # of the folder names) get -2, -3, ... in the order of their keys.
    seen: dict[str, int] = {}
    for s in sweeps:
        count = seen.get(s.name, 0) + 1
        seen[s.name] = count
        if count > 1:
            s.suffix = f"-{count}"


def select_members(members: Sequence[MemberRun]) -> tuple[list[MemberRun], list[str]]:
    """One member per (data set, group, seed) of ONE sweep; notes on what was set aside.

    Of duplicates, a finished member beats a diverged one, which beats an unfinished one;
    two finished duplicates are an error (which one counts is the user's decision). Callers
    partition first, so a member of one budget or data set never stands in for another's.
    """
    notes = []
    chosen: dict[tuple, MemberRun] = {}
    for m in members:
        key = (m.dataset, m.group, m.seed)
        held = chosen.get(key)
        if held is None:
            chosen[key] = m
            continue
        if held.status == m.status == FINISHED:
            raise ElureproError(
                f"two finished members for group {m.group!r}, seed {m.seed} "
                f"({m.dataset}): {held.folder} and {m.folder}; move one out of the runs "
                "folder or pass a narrower folder"
            )
        keep, drop = sorted([held, m], key=lambda x: _RANK.get(x.status, 2))
        chosen[key] = keep
        notes.append(
            f"duplicate: {drop.id} ({drop.status}) in {drop.folder} is set aside in favour "
            f"of the {keep.status} member in {keep.folder}"
        )
    return list(chosen.values()), notes
