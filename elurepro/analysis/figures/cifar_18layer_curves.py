"""Table 1's network: training loss and test error per data set, phase ends dotted."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import (
    config_style,
    new_figure,
    panel_title,
    plot_curve,
    step_curve,
)
from elurepro.analysis.provenance import data_label
from elurepro.analysis.schedule import phase_ends


def write(a: Analysis, w: ReportWriter, datasets: list[str], groups: list[str]) -> None:
    """Training loss and test error per data set, with the phase ends dotted."""
    fig, axes = new_figure(2, len(datasets))
    for col, d in enumerate(datasets):
        members = [m for m in a.members if m.dataset == d]
        for row, (metric, ylabel, what) in enumerate(
            [
                ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
                ("test/error", "test error (%)", "test error"),
            ]
        ):
            ax = axes[row, col]
            for group in groups:
                chosen = [m for m in members if m.group == group]
                if chosen:
                    curve = step_curve(a.table(), chosen, metric)
                    plot_curve(ax, curve, label=f"{group} (n={curve.n})", **config_style(chosen))
            for m in members[:1]:
                for _, end in phase_ends(a.table(), m)[:-1]:
                    ax.axvline(end / 1000.0, color="gray", lw=0.7, ls=":")
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            label = data_label(members)
            panel_title(ax, "abcdefgh"[row * len(datasets) + col], f"{label}: {what}")
            ax.legend()
    fig.suptitle(f"18-layer network (dotted: phase ends) — {a.context()}")
    w.section("Learning curves")
    w.figure(fig, "cifar_18layer_curves", a.caption("Table 1 network: learning curves"))
