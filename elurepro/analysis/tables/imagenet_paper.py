"""Fig. 6's runs against the paper's numbers: iterations, final top-5, hours, ELU's slowdown."""

from __future__ import annotations

import math

import numpy as np

from elurepro.analysis.collect import FINISHED
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.progress import hours_per_10k, iterations_to_reach
from elurepro.analysis.reported import find_reported
from elurepro.analysis.stats import describe


def _finished_mean(a: Analysis, config: str, fn) -> tuple[float, int, int]:
    """Mean of fn(member) over finished members: (mean, n with a value, n finished)."""
    finished = a.finished(config)
    values = [fn(m) for m in finished]
    got = [v for v in values if v is not None and math.isfinite(v)]
    return (float(np.mean(got)) if got else math.nan), len(got), len(finished)


def write(a: Analysis, w: ReportWriter) -> None:
    table = a.table()
    rows = []
    hours = {}
    reason = a.not_comparable
    for config in a.configs():
        paper = find_reported(a.reported, a.experiment, "iterations_to_20pct_top5", config)
        mean, n, total = _finished_mean(a, config, lambda m: iterations_to_reach(table, m))
        ours = "—" if total == 0 else (f"{mean:,.0f} (n={n})" if n else f"not reached (n={total})")
        diff = f"{mean - paper.value:+,.0f}" if paper and n else "—"
        if reason and diff != "—":
            diff = "not comparable"
        rows.append(
            [
                "iterations to 20 % top-5 (5k val.)",
                config,
                f"{paper.value:,.0f}" if paper else "—",
                ours,
                diff,
            ]
        )

        paper = find_reported(a.reported, a.experiment, "final_top5_error", config)
        full = describe([table.final(m, "val_full/top5_error") for m in a.finished(config)])
        sub = describe([table.final(m, "val/top5_error") for m in a.finished(config)])
        ours = (
            f"{full.text(2)} full val." if full.n else (f"{sub.text(2)} 5k val." if sub.n else "—")
        )
        rows.append(
            ["final top-5 error (%)", config, f"< {paper.value:g}" if paper else "—", ours, "—"]
        )

        paper = find_reported(a.reported, a.experiment, "wall_time_per_10k_iterations", config)
        mean, n, _ = _finished_mean(a, config, lambda m: hours_per_10k(table, m))
        hours[config] = mean
        rows.append(
            [
                "wall-clock hours per 10k iterations",
                config,
                f"{paper.value:.2f}" if paper else "—",
                f"{mean:.3f} (n={n})" if n else "—",
                "other hardware",
            ]
        )
    paper = find_reported(a.reported, a.experiment, "slowdown", "elu vs relu")
    if "elu" in hours and "relu" in hours:
        devices = {(m.summary or {}).get("device") for m in a.members if m.status == FINISHED}
        ratio = hours["elu"] / hours["relu"] if hours["relu"] else math.nan
        same = "same device" if len(devices) == 1 else "DIFFERENT devices: not comparable"
        ours = f"{(ratio - 1) * 100:+.1f} % ({same})" if math.isfinite(ratio) else "—"
        rows.append(
            [
                "ELU slowdown vs ReLU",
                "elu vs relu",
                f"about {paper.value:g} % (12.15 / 11.48)" if paper else "—",
                ours,
                "—",
            ]
        )
    w.section("Against the paper's numbers (finished members)")
    if a.claims_caveat():
        w.text(a.claims_caveat())
    w.table(
        ["quantity", "configuration", "paper", "ours", "ours − paper"],
        rows,
        csv_name="paper_comparison.csv",
    )
    if reason:
        w.text(f"**Not comparable with the paper's numbers:** {reason}.")
