"""Fig. 6's runs per member: iterations to 20 % top-5, final errors, speed (members.csv)."""

from __future__ import annotations

import numpy as np

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.format import fmt
from elurepro.analysis.progress import hours_per_10k, iterations_to_reach


def write(a: Analysis, w: ReportWriter) -> None:
    """Per member: iterations to 20 % top-5, last and full-validation errors, speed."""
    table = a.table()
    rows = []
    for config, members in a.configs().items():
        for m in members:
            reached = iterations_to_reach(table, m)
            _, top5 = table.series(m, "val/top5_error", "step")
            best = f"not reached (best {np.nanmin(top5):.2f} %)" if top5.size else "not logged"
            rows.append(
                [
                    config,
                    m.id,
                    m.status,
                    reached if reached is not None else best,
                    fmt(table.final(m, "val/top5_error")),
                    fmt(table.final(m, "val/error")),
                    fmt(table.final(m, "val_full/top5_error")),
                    fmt(table.final(m, "val_full/error")),
                    fmt(hours_per_10k(table, m), 3),
                    (m.summary or {}).get("device", "?"),
                ]
            )
    w.section("Per member")
    w.table(
        [
            "configuration",
            "member",
            "status",
            "iterations to 20 % top-5",
            "last top-5 (5k)",
            "last top-1 (5k)",
            "top-5 full val",
            "top-1 full val",
            "h per 10k it",
            "device",
        ],
        rows,
        csv_name="members.csv",
    )
