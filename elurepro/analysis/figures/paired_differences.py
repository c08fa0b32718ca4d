"""The paired differences from the baseline by seed, with their Wilcoxon p (every report)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.headline import UnitComparison
from elurepro.analysis.plotting import color_for, figure_title, new_figure, panel_title


@dataclass
class Difference:
    """One dot-and-whisker entry: a configuration's paired differences from the baseline."""

    label: str
    unit: str
    differences: Sequence[float]
    p_less: float
    p_two_sided: float
    batchnorm: bool = False


def _p_text(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "—"
    return f"{p:.2g}" if p < 0.01 else f"{p:.2f}"


def difference_panel(ax: Axes, items: Sequence[Difference], ylabel: str) -> None:
    """Per entry: every pair's difference (dots), their mean ± std (whisker), and the one- and
    two-sided Wilcoxon p above it. Below zero: the configuration is lower (better)."""
    ax.axhline(0.0, color="black", lw=0.7)
    for i, item in enumerate(items):
        d = np.asarray(item.differences, dtype=float)
        color = color_for(item.unit)
        face = "white" if item.batchnorm else color
        if d.size:
            jitter = (np.arange(d.size) - (d.size - 1) / 2) * min(0.04, 0.3 / d.size)
            ax.scatter(i + jitter, d, s=9, color=color, alpha=0.55, lw=0, zorder=2)
            spread = float(d.std(ddof=1)) if d.size > 1 else 0.0
            ax.errorbar(
                [i + 0.25],
                [float(d.mean())],
                yerr=[spread],
                fmt="o",
                color=color,
                mfc=face,
                ms=5,
                capsize=3,
                zorder=3,
            )
        text = f"p₁ {_p_text(item.p_less)}\np₂ {_p_text(item.p_two_sided)}\nn={d.size}"
        ax.annotate(
            text,
            (i, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="top",
            fontsize=6,
        )
    ax.set_xticks(range(len(items)), [item.label for item in items], rotation=30, ha="right")
    ax.set_xlim(-0.6, max(len(items), 1) - 0.4)
    ax.set_ylabel(ylabel)
    # Room above the data for the p annotations.
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.35 * (hi - lo if hi > lo else 1.0))


def difference_items(rows: Sequence[UnitComparison]) -> list[Difference]:
    return [
        Difference(
            label=f"{r.result.group_a}" + ("" if r.kind == "vs baseline" else " − no BN"),
            unit=r.a_unit,
            differences=r.result.differences,
            p_less=r.result.p_less,
            p_two_sided=r.result.p_two_sided,
            batchnorm=r.batchnorm,
        )
        for r in rows
    ]


def write(a: Analysis, w: ReportWriter, rows: Sequence[UnitComparison]) -> None:
    """One panel per headline metric and kind of comparison (none without comparisons)."""
    if not rows:
        return
    panels: dict[tuple[str, str], list[UnitComparison]] = {}
    for r in rows:
        panels.setdefault((r.metric_label, r.kind), []).append(r)
    ncols = min(2, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    width = max(3.4, 0.55 * max(len(v) for v in panels.values()) + 1.4)
    fig, axes = new_figure(nrows, ncols, panel=(width, 2.8))
    for k, ((label, kind), items) in enumerate(panels.items()):
        ax = axes[k // ncols, k % ncols]
        against = f"− {a.baseline}" if kind == "vs baseline" else "with BN − without"
        difference_panel(ax, difference_items(items), f"difference ({against})")
        # Titles stay inside their panel (less the axis labels' margin): none runs into the next.
        panel_title(ax, "abcdefghijklmnop"[k % 16], f"{label}, {kind}", width - 0.9)
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    title = (
        "Paired differences A − B by seed (dots), mean ± std (whisker); below 0: A lower "
        f"(better) — {a.context()}"
    )
    figure_title(fig, title)
    w.figure(
        fig,
        "paired_differences",
        a.caption(f"Paired differences from the baseline {a.baseline} and BN effects", False),
    )
