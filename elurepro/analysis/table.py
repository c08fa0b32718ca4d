"""The runs of a folder as one long-format table: one row per member × step × metric.

Read once from the validated members (``collect.load_member``), so a figure or table asks the
table for its numbers instead of walking each member's records again. The configuration columns
(experiment, data, budget, sweep folder, unit, group, seed, lr, bn, status, diverged_at) are
stored once per member in ``config`` and joined onto the rows by ``column``: the same table as
one with them repeated on every row, without a copy of each string per value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
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
        ("wall_time", np.float64),  # seconds of training; NaN where the record has none
        ("metric", object),
        ("value", np.float64),
    ]
)
# The summary's `final` values: what a finished run reports as its end, which may be measured
# after the last logged line (a full test pass).
FINAL = np.dtype([("member", np.int64), ("metric", object), ("value", np.float64)])


@dataclass(frozen=True)
class RunTable:
    """Rows (``ROW``) of the members' logged values; ``config`` (``CONFIG``) per member;
    ``finals`` (``FINAL``) the values of the members' summary.json ``final``."""

    members: list[MemberRun]
    config: np.ndarray
    rows: np.ndarray
    finals: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """A column of the rows, configuration columns included."""
        if name in ROW.names:
            return self.rows[name]
        return self.config[name][self.rows["member"]]

    def where(self, mask: np.ndarray) -> RunTable:
        """The rows where `mask` (over the rows) holds; every member stays."""
        return RunTable(self.members, self.config, self.rows[mask], self.finals)

    def select(self, members: Sequence[MemberRun]) -> RunTable:
        """The table of `members` (some of this table's), in their order: read once, asked
        per sweep."""
        picked = [self.index(m) for m in members]
        renumber = np.full(len(self.members), -1, dtype=np.int64)
        renumber[picked] = np.arange(len(picked))

        def kept(array: np.ndarray) -> np.ndarray:
            out = array[renumber[array["member"]] >= 0]
            out["member"] = renumber[out["member"]]
            return out

        return RunTable(
            [self.members[i] for i in picked],
            self.config[picked],
            kept(self.rows),
            kept(self.finals),
        )

    def metric(self, name: str) -> RunTable:
        return self.where(self.rows["metric"] == name)

    def metrics(self) -> list[str]:
        """Every metric logged by any member, sorted."""
        return sorted(set(self.rows["metric"].tolist()))

    def logged(self, members: Sequence[MemberRun] | None = None) -> set[str]:
        """The metrics that `members` (default: all) logged at least once."""
        if members is None:
            return set(self.rows["metric"].tolist())
        wanted = {self.index(m) for m in members}
        return {metric for member, metric in self._groups if member in wanted}

    def layer_metrics(self, prefix: str) -> list[str]:
        """Metric names ``<prefix>/layerN`` any member logged, in layer order."""
        pattern = re.compile(re.escape(prefix) + r"/layer(\d+)$")
        found = [name for name in self.logged() if pattern.match(name)]
        return sorted(found, key=lambda name: int(pattern.match(name).group(1)))

    def index(self, member: MemberRun | int) -> int:
        """The member's index into ``members`` (an index is returned as it is)."""
        if isinstance(member, (int, np.integer)):
            return int(member)
        return self._index[id(member)]

    def series(
        self, member: MemberRun | int, metric: str, x: str = "epoch"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The member's (x, value) points of `metric`, sorted by x (``step`` or ``epoch``);
        NaN/inf values kept, points without that x left out. Where a resumed run logged an x
        twice, its later line wins."""
        rows = self.rows[self._groups.get((self.index(member), metric), [])]
        points: dict[float, float] = {}
        for at, value in zip(rows[x].astype(float).tolist(), rows["value"].tolist(), strict=True):
            if not math.isnan(at):
                points[at] = value
        xs = np.asarray(sorted(points), dtype=float)
        return xs, np.asarray([points[v] for v in xs], dtype=float)

    def epoch_series(self, member: MemberRun | int, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """`series` over epochs without epoch 0 (the value before training)."""
        x, y = self.series(member, metric)
        return x[x > 0], y[x > 0]

    def final(self, member: MemberRun | int, metric: str) -> float | None:
        """The summary's final value of `metric`, else the member's last logged one."""
        i = self.index(member)
        found = self.finals[(self.finals["member"] == i) & (self.finals["metric"] == metric)]
        if len(found):
            return float(found["value"][-1])
        _, y = self.series(i, metric, x="step")
        return float(y[-1]) if len(y) else None

    @cached_property
    def _index(self) -> dict[int, int]:
        return {id(m): i for i, m in enumerate(self.members)}

    @cached_property
    def _groups(self) -> dict[tuple[int, str], list[int]]:
        # (member, metric) -> its rows in line order: one pass, so a query reads only its rows.
        out: dict[tuple[int, str], list[int]] = {}
        pairs = zip(self.rows["member"].tolist(), self.rows["metric"].tolist(), strict=True)
        for k, key in enumerate(pairs):
            out.setdefault(key, []).append(k)
        return out

    def _rows_of(self, member: MemberRun | int) -> np.ndarray:
        # The member's rows in line order: rows are appended member by member, line by line,
        # and every selection keeps their order.
        return self.rows[self.rows["member"] == self.index(member)]

    def last_step(self, member: MemberRun | int) -> int | None:
        """The last step the member logged a value at, else None."""
        steps = self._rows_of(member)["step"]
        return int(steps.max()) if len(steps) else None

    def last_epoch(self, member: MemberRun | int) -> float | None:
        """The largest epoch the member logged a value at, else None."""
        epochs = self._rows_of(member)["epoch"]
        epochs = epochs[~np.isnan(epochs)]
        return float(epochs.max()) if len(epochs) else None

    def epoch_point(self, member: MemberRun | int) -> tuple[int, float] | None:
        """The member's first logged (step, epoch) with both non-zero: the step/epoch ratio."""
        for r in self._rows_of(member):
            if r["step"] and r["epoch"] and not math.isnan(r["epoch"]):
                return int(r["step"]), float(r["epoch"])
        return None

    def step_to_epoch(self, member: MemberRun | int, step: float) -> float | None:
        """`step` in epochs at the member's step/epoch ratio, else None."""
        point = self.epoch_point(member)
        return None if point is None else float(step) * point[1] / float(point[0])

    def axis(
        self, member: MemberRun | int, name: str, x: str = "step"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The member's (x, axis `name`) points (``wall_time`` over ``step``), sorted by x, over
        the lines that logged a value; the later line wins, NaN left out."""
        rows = self._rows_of(member)
        points: dict[float, float] = {}
        for at, value in zip(rows[x].astype(float).tolist(), rows[name].tolist(), strict=True):
            if not (math.isnan(at) or math.isnan(value)):
                points[at] = value
        xs = np.asarray(sorted(points), dtype=float)
        return xs, np.asarray([points[v] for v in xs], dtype=float)

    def until(self, step: int) -> RunTable:
        """The rows logged at or before `step` (``--partial``'s cut)."""
        return self.where(self.rows["step"] <= step)

    def by_member_epoch(self) -> dict[tuple[int, float], dict[str, float]]:
        """(member index, epoch) -> {metric: value}, in record order, so where a resumed run
        logged an epoch twice its later line wins; rows without an epoch are left out."""
        out: dict[tuple[int, float], dict[str, float]] = {}
        for r in self.rows[np.argsort(self.rows["line"], kind="stable")]:
            if not math.isnan(r["epoch"]):
                out.setdefault((int(r["member"]), float(r["epoch"])), {})[r["metric"]] = r["value"]
        return out


def _axis(record: dict, name: str) -> float:
    value = record.get(name)
    return math.nan if value is None else float(value)


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
            step = int(record["step"])
            epoch, wall = (_axis(record, name) for name in ("epoch", "wall_time"))
            for name, value in record.items():
                if name not in AXES and value is not None:
                    rows.append((i, line, step, epoch, wall, name, float(value)))
    finals = [
        (i, name, float(value))
        for i, m in enumerate(members)
        for name, value in ((m.summary or {}).get("final") or {}).items()
        if value is not None
    ]
    config = np.array([_config_row(m) for m in members], dtype=CONFIG)
    return RunTable(members, config, np.array(rows, dtype=ROW), np.array(finals, dtype=FINAL))


def read_runs(runs_dir: str | Path) -> RunTable:
    """Every member under `runs_dir`, read once."""
    return from_members(collect_members(runs_dir))
