"""Fig. 5: each unit with and without BN beside the baseline with and without BN."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import (
    ZOOM_END,
    config_style,
    new_figure,
    panel_title,
    plot_curve,
    step_curve,
    unit_name,
    zoom,
)


def write(a: Analysis, w: ReportWriter, xmax: float) -> None:
    """Fig. 5: one column per non-baseline unit present, each with and without BN, beside the
    baseline with and without BN."""
    configs = a.configs()
    base = a.baseline
    others = [u for u in a.units() if u != base] or [base]
    fig, axes = new_figure(2, len(others))
    for col, other in enumerate(others):
        wanted = [base, f"{base}+bn", other, f"{other}+bn"]
        chosen = [c for c in dict.fromkeys(wanted) if c in configs]
        curves = {c: step_curve(a.table(), configs[c], "test/error") for c in chosen}
        for row in range(2):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **config_style(configs[config]))
            if row == 1:
                zoom(ax, list(curves.values()), ZOOM_END * xmax, xmax)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel("test error (%)")
            part = "end" if row else "full run"
            title = f"{unit_name(base)} vs {unit_name(other)}" if other != base else base
            panel_title(ax, "abcdefghijklmnopqrstuvwxyz"[(row * len(others) + col) % 26], title)
            ax.set_title(f"{part}", loc="right", fontsize=7)
        if curves:
            axes[0, col].legend()
    fig.suptitle(f"Fig. 5, with and without BN (dashed: BN) — {a.context()}")
    w.section("Fig. 5: with and without batch normalization")
    w.figure(fig, "fig5_batchnorm", a.caption("Fig. 5"))
