"""Table 1's runs: the test error at the end of each training phase, per member (phases.csv)."""

from __future__ import annotations

from elurepro.analysis.collect import MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.provenance import data_label
from elurepro.analysis.schedule import phase_ends
from elurepro.analysis.table import RunTable


def _error_at(table: RunTable, member: MemberRun, start: int, end: int) -> tuple[float, int] | None:
    """The last test/error logged in (start, end]: (value, step)."""
    x, y = table.series(member, "test/error", "step")
    inside = (x > start) & (x <= end)
    if not inside.any():
        return None
    return float(y[inside][-1]), int(x[inside][-1])


def write(a: Analysis, w: ReportWriter) -> None:
    """The test error at the end of each training phase, per member."""
    rows = []
    for m in sorted(a.members, key=lambda m: (m.dataset, m.seed)):
        start = 0
        for name, end in phase_ends(a.table(), m):
            hit = _error_at(a.table(), m, start, end)
            rows.append(
                [
                    data_label([m]),
                    m.id,
                    m.status,
                    name,
                    end,
                    "—" if hit is None else f"{hit[0]:.2f}",
                    "—" if hit is None else hit[1],
                ]
            )
            start = end
    w.section("Test error at the end of each training phase")
    w.text(
        "Phase ends come from a `phase` field in metrics.jsonl when the trainer logs one, "
        "otherwise from schedule D1 (115k / 165k / 205k of 205k iterations, scaled to the "
        "run's length). The value is the last `test/error` logged in the phase."
    )
    headers = [
        "data set",
        "member",
        "status",
        "phase",
        "phase end (step)",
        "test error (%)",
        "logged at step",
    ]
    w.table(headers, rows, csv_name="phases.csv")
