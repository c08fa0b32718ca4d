"""How far and how fast a member trained: iterations to 20 % top-5 error, hours per 10k."""

from __future__ import annotations

import numpy as np

from elurepro.analysis.collect import MemberRun
from elurepro.analysis.table import RunTable

TOP5_TARGET = 20.0


def iterations_to_reach(
    table: RunTable,
    member: MemberRun,
    metric: str = "val/top5_error",
    threshold: float = TOP5_TARGET,
) -> int | None:
    """The step of the first log point with `metric` at or below `threshold`, else None."""
    x, y = table.series(member, metric, "step")
    hit = np.flatnonzero(y <= threshold)
    return int(x[hit[0]]) if hit.size else None


def hours_per_10k(table: RunTable, member: MemberRun) -> float | None:
    """Wall-clock hours per 10k iterations from the first to the last timed record."""
    x, t = table.axis(member, "wall_time")
    if x.size < 2 or x[-1] <= x[0]:
        return None
    return float((t[-1] - t[0]) / (x[-1] - x[0]) * 10_000 / 3600)
