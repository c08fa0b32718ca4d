"""Fig. 2's runs: final values, mean ± std over finished seeds (final_values.csv)."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.stats import describe

MEANACT_METRICS = [
    ("act/median", 4),
    ("train/loss", 4),
    ("val/loss", 4),
    ("train/error", 2),
    ("val/error", 2),
    ("test/loss", 4),
    ("test/error", 2),
]


def write(a: Analysis, w: ReportWriter) -> None:
    configs = a.configs()
    present = a.table().logged()
    metrics = [(name, d) for name, d in MEANACT_METRICS if name in present]
    rows, csv_rows = [], []
    for config in configs:
        row = [config]
        for metric, digits in metrics:
            stats = describe(list(a.finals(config, metric).values()))
            row.append(stats.text(digits))
            csv_rows.append([config, metric, stats.n, stats.mean, stats.std])
        rows.append(row)
    w.section("Final values (mean ± std over finished seeds)")
    w.table(["configuration"] + [m for m, _ in metrics], rows)
    w.csv("final_values.csv", ["configuration", "metric", "n", "mean", "std"], csv_rows)
    w.text("(CSV: `final_values.csv`)")
