"""Learning curves of whatever the members logged (the report of an experiment the paper lacks)."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import (
    config_style,
    epoch_curve,
    legend,
    log_scale_if_positive,
    new_figure,
    panel_title,
    plot_curve,
)

# Panels, in this order, for whichever of these metrics the members logged.
CURVES = (
    ("train/loss", "training loss"),
    ("train/error", "training error (%)"),
    ("val/error", "validation error (%)"),
    ("test/error", "test error (%)"),
    ("train/recon_error", "training reconstruction error"),
    ("test/recon_error", "test reconstruction error"),
    ("act/median", "median unit activation"),
)


def write(a: Analysis, w: ReportWriter) -> None:
    """One panel per metric of CURVES that the members logged, mean ± std over seeds."""
    logged = a.table().logged()
    panels = [(metric, label) for metric, label in CURVES if metric in logged]
    configs = a.configs()
    if panels:
        fig, axes = new_figure(1, len(panels))
        for ax, (metric, label), letter in zip(axes[0], panels, "abcdefg", strict=False):
            for config, members in configs.items():
                curve = epoch_curve(a.table(), members, metric, trained=True)
                plot_curve(ax, curve, label=f"{config} (n={curve.n})", **config_style(members))
            if metric.endswith("loss"):
                log_scale_if_positive(ax)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            panel_title(ax, letter, label)
        legend(fig, axes[0, 0])
        fig.suptitle(f"{a.experiment} (mean ± std over seeds) — {a.context()}")
        w.section("Learning curves")
        w.figure(fig, "learning_curves", f"{a.experiment}: learning curves ({a.context()})")
