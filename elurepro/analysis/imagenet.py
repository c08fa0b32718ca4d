"""Report for the ImageNet experiment: Fig. 6, iterations to 20 % top-5 error, timing."""

from __future__ import annotations

import math

import numpy as np

from elurepro.analysis.collect import FINISHED, MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import paired_differences
from elurepro.analysis.format import fmt
from elurepro.analysis.plotting import (
    color_for,
    new_figure,
    panel_title,
    plot_curve,
    step_curve,
)
from elurepro.analysis.provenance import not_comparable_reason
from elurepro.analysis.reported import find_reported
from elurepro.analysis.stats import describe
from elurepro.analysis.table import RunTable
from elurepro.analysis.tables import comparisons

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


def report_imagenet(a: Analysis, w: ReportWriter) -> None:
    _fig6(a, w)
    _member_table(a, w)
    _paper_table(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)


def _fig6(a: Analysis, w: ReportWriter) -> None:
    """Fig. 6: training loss, top-5 and top-1 validation error over iterations."""
    configs = a.configs()
    fig, axes = new_figure(1, 3)
    panels = [
        ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
        ("val/top5_error", "top-5 error (%), 5k val. images", "top-5 validation error"),
        ("val/error", "top-1 error (%), 5k val. images", "top-1 validation error"),
    ]
    for ax, (metric, ylabel, what), letter in zip(axes[0], panels, "abc", strict=True):
        for config, members in configs.items():
            curve = step_curve(a.table(), members, metric)
            plot_curve(ax, curve, label=f"{config} (n={curve.n})", color=color_for(members[0].unit))
        if metric == "val/top5_error":
            ax.axhline(TOP5_TARGET, color="gray", lw=0.7, ls=":", label="20 %")
        ax.set_xlabel("iterations (×1000)")
        ax.set_ylabel(ylabel)
        panel_title(ax, letter, what)
        ax.legend()
    fig.suptitle(f"Fig. 6, 15-layer SPP network (center crop) — {a.context()}")
    w.section("Fig. 6: learning curves")
    w.figure(fig, "fig6_learning_curves", a.caption("Fig. 6"))


def _member_table(a: Analysis, w: ReportWriter) -> None:
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


def _finished_mean(a: Analysis, config: str, fn) -> tuple[float, int, int]:
    """Mean of fn(member) over finished members: (mean, n with a value, n finished)."""
    finished = a.finished(config)
    values = [fn(m) for m in finished]
    got = [v for v in values if v is not None and math.isfinite(v)]
    return (float(np.mean(got)) if got else math.nan), len(got), len(finished)


def _paper_table(a: Analysis, w: ReportWriter) -> None:
    table = a.table()
    rows = []
    hours = {}
    reason = not_comparable_reason(a.members, "imagenet")
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
