"""Fig. 6: the SPP network's training loss, top-5 and top-1 validation error over iterations."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import color_for, new_figure, panel_title, plot_curve, step_curve
from elurepro.analysis.progress import TOP5_TARGET


def write(a: Analysis, w: ReportWriter) -> None:
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
