"""The runs of a folder as one long-format table: one row per member × step × metric.

Read once from the validated members (``collect.load_member``), so a figure or table asks the
table for its numbers instead of walking each member's records again. The configuration columns
(experiment, data, budget, sweep folder, unit, group, seed, lr, bn, status, diverged_at) are
stored once per member in ``config`` and joined onto the rows by ``column``: the same table as
one with them repeated on every row, without a copy of each string per value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from elurepro.analysis.collect import MemberRun, collect_members

# Keys of a metrics record that locate a point rather than measure something.
AXES = ("step", "epoch", "images", "wall_time")

CONFIG = np.dtype(
    [
        ("experiment", object),
        ("data", object),
        ("budget", object),
        ("sweep", object),  # the sweep folder, <runs>/.../<data>-<budget>/d<fp8>-c<cfg8>
        ("unit", object),
        ("group", object),
        ("id", object),
        ("seed", np.int64),
        ("lr", np.float64),  # NaN where member.json has none
        ("bn", np.bool_),
        ("status", object),
        ("diverged_at", np.int64),  # -1 unless diverged
    ]
)
ROW = np.dtype(
    [
        ("member", np.int64),  # index into RunTable.members and RunTable.config
        ("line", np.int64),  # the record's line in metrics.jsonl: a resumed run's later line wins
        ("step", np.int64),
        ("epoch", np.float64),  # NaN where the record has no epoch
        ("metric", object),
        ("value", np.float64),
    ]
)


@dataclass(frozen=True)
class RunTable:
    """Rows (``ROW``) of the members' logged values; ``config`` (``CONFIG``) per member."""

    members: list[MemberRun]
    config: np.ndarray
    rows: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """A column of the rows, configuration columns included."""
        if name in ROW.names:
            return self.rows[name]
        return self.config[name][self.rows["member"]]

    def where(self, mask: np.ndarray) -> RunTable:
        """The rows where `mask` (over the rows) holds; every member stays."""
        return RunTable(self.members, self.config, self.rows[mask])

    def metric(self, name: str) -> RunTable:
        return self.where(self.rows["metric"] == name)

    def metrics(self) -> list[str]:
        """Every metric logged by any member, sorted."""
        return sorted(set(self.rows["metric"].tolist()))

    def by_member_epoch(self) -> dict[tuple[int, float], dict[str, float]]:
        """(member index, epoch) -> {metric: value}, in record order, so where a resumed run
        logged an epoch twice its later line wins; rows without an epoch are left out."""
        out: dict[tuple[int, float], dict[str, float]] = {}
        for r in self.rows[np.argsort(self.rows["line"], kind="stable")]:
            if not math.isnan(r["epoch"]):
                out.setdefault((int(r["member"]), float(r["epoch"])), {})[r["metric"]] = r["value"]
        return out


def _config_row(m: MemberRun) -> tuple:
    diverged = m.diverged_at_step
    return (
        m.experiment,
        m.dataset,
        m.budget or "unknown",
        str(m.sweep_folder),
        m.unit,
        m.group,
        m.id,
        m.seed,
        math.nan if m.lr is None else m.lr,
        m.batchnorm,
        m.status,
        -1 if diverged is None else diverged,
    )


def from_members(members: Sequence[MemberRun]) -> RunTable:
    """The table of members already read (an analysis's, after its selection)."""
    members = list(members)
    rows = []
    for i, m in enumerate(members):
        for line, record in enumerate(m.records):
            epoch = record.get("epoch")
            epoch = math.nan if epoch is None else float(epoch)
            for name, value in record.items():
                if name not in AXES and value is not None:
                    rows.append((i, line, int(record["step"]), epoch, name, float(value)))
    config = np.array([_config_row(m) for m in members], dtype=CONFIG)
    return RunTable(members, config, np.array(rows, dtype=ROW))


def read_runs(runs_dir: str | Path) -> RunTable:
    """Every member under `runs_dir`, read once."""
    return from_members(collect_members(runs_dir))
