"""Fig. 4: the 11-layer CNN's learning curves without BN, full run, start and end."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import (
    ZOOM_END,
    ZOOM_START,
    config_style,
    new_figure,
    panel_title,
    plot_curve,
    step_curve,
    zoom,
)


def write(a: Analysis, w: ReportWriter, xmax: float) -> None:
    """Fig. 4: every configuration without BN, one curve each, over the full run, its start and
    its end."""
    configs = a.configs()
    context = a.context()
    windows = [
        ("full run", None),
        ("start", (0.0, ZOOM_START * xmax)),
        ("end", (ZOOM_END * xmax, xmax)),
    ]
    plain = {c: ms for c, ms in configs.items() if not ms[0].batchnorm}
    fig, axes = new_figure(2, 3)
    for row, (metric, ylabel, what) in enumerate(
        [
            ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
            ("test/error", "test error (%)", "test error"),
        ]
    ):
        curves = {c: step_curve(a.table(), ms, metric) for c, ms in plain.items()}
        for col, (part, window) in enumerate(windows):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **config_style(plain[config]))
            if window:
                zoom(ax, list(curves.values()), *window)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            panel_title(ax, "abcdef"[3 * row + col], f"{what}, {part}")
    if plain:
        axes[0, 0].legend()
    fig.suptitle(f"Fig. 4, 11-layer CNN without BN (mean ± std over seeds) — {context}")
    w.section("Fig. 4: learning curves without batch normalization")
    w.figure(fig, "fig4_learning_curves", a.caption("Fig. 4"))
