"""Appendix C: variability of the median activation over training (table, check, box plots)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from elurepro.analysis.claims import elu_config
from elurepro.analysis.collect import FINISHED
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.format import Column, record_rows
from elurepro.analysis.plotting import (
    config_style,
    figure_title,
    log_scale_if_positive,
    new_figure,
)
from elurepro.analysis.stats import Describe, describe


def _sci(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"


def trajectory_variability(y: Sequence[float]) -> tuple[float, float]:
    """(variance over epochs, variance of the epoch-to-epoch differences) of a curve."""
    y = np.asarray(y, dtype=float)
    var = float(np.var(y)) if y.size >= 2 else math.nan
    dvar = float(np.var(np.diff(y))) if y.size >= 3 else math.nan
    return var, dvar


@dataclass
class Variability:
    """Appendix C, one finished member and one layer: how much its median activation moves."""

    config: str
    seed: int
    member: str
    layer: str
    epochs: int
    variance: float
    diff_variance: float


VARIABILITY_COLUMNS: list[Column[Variability]] = [
    Column("configuration", "configuration", lambda r: r.config),
    Column("seed", "seed", lambda r: r.seed),
    Column("member", "member", lambda r: r.member),
    Column("layer", "layer", lambda r: r.layer),
    Column("epochs", "epochs", lambda r: r.epochs),
    Column("variance of median", "variance_of_median", lambda r: r.variance),
    Column("variance of differences", "variance_of_differences", lambda r: r.diff_variance),
]


@dataclass
class VariabilitySummary:
    """Appendix C table row: one configuration and layer, over seeds."""

    config: str
    layer: str
    variance: Describe
    diff_variance: Describe


VARIABILITY_SUMMARY_COLUMNS: list[Column[VariabilitySummary]] = [
    Column("configuration", "configuration", lambda r: r.config),
    Column("layer", "layer", lambda r: r.layer),
    Column("n", "n", lambda r: r.variance.n),
    Column(
        "variance of median",
        "variance_mean",
        lambda r: r.variance.mean,
        lambda r: f"{_sci(r.variance.mean)} ± {_sci(r.variance.std)}",
    ),
    Column(
        "variance of differences",
        "diff_variance_mean",
        lambda r: r.diff_variance.mean,
        lambda r: f"{_sci(r.diff_variance.mean)} ± {_sci(r.diff_variance.std)}",
    ),
]


def _variability(a: Analysis, layers: list[str], names: dict[str, str]) -> list[Variability]:
    """Per finished member and layer: the variability of its median activation's trajectory."""
    rows = []
    for config, members in a.configs().items():
        for m in members:
            if m.status != FINISHED:
                continue
            for metric in layers:
                # The trajectory, without the value before training.
                _, y = a.table().epoch_series(m, metric)
                var, dvar = trajectory_variability(y)
                rows.append(Variability(config, m.seed, m.id, names[metric], len(y), var, dvar))
    return rows


def write(a: Analysis, w: ReportWriter) -> None:
    """Appendix C: the variability table, the ReLU-vs-ELU check and the box plots."""
    configs = a.configs()
    layers = ["act/median"] + a.table().layer_metrics("act/median")
    names = {
        metric: metric.split("/")[-1] if metric != "act/median" else "all units"
        for metric in layers
    }
    rows = _variability(a, layers, names)
    w.section("Appendix C: variability of the median activation over training")
    w.text(
        "Per finished member and layer: the variance over epochs 1…E of the median (over "
        "units) of the per-unit mean activation, and the variance of its epoch-to-epoch "
        "differences (population variance of the trajectory, epoch 0 excluded). "
        "Table: mean ± std over seeds."
    )

    def of(config: str, layer: str) -> list[Variability]:
        return [r for r in rows if r.config == config and r.layer == layer]

    table = [
        VariabilitySummary(
            config,
            names[metric],
            describe([r.variance for r in of(config, names[metric])]),
            describe([r.diff_variance for r in of(config, names[metric])]),
        )
        for config in configs
        for metric in layers
    ]
    w.records(table, VARIABILITY_SUMMARY_COLUMNS)
    _, _, csv_headers, csv_rows = record_rows(rows, VARIABILITY_COLUMNS)
    w.csv("appendix_c.csv", csv_headers, csv_rows)
    w.text("(CSV: `appendix_c.csv`)")
    pooled = {config: describe([r.variance for r in of(config, "all units")]) for config in configs}
    relu = next(
        (c for c, ms in configs.items() if ms[0].unit == "relu" and not ms[0].batchnorm), None
    )
    elu = elu_config(a)
    if relu and elu and pooled[relu].n and pooled[elu].n:
        answer = "yes" if pooled[relu].mean > pooled[elu].mean else "no"
        if a.claims_caveat():
            w.text(a.claims_caveat())
        w.bullets(
            [
                "Does the pooled median activation vary more over training in ReLU than in ELU "
                f"networks (mean variance over seeds)? **{answer}** — relu "
                f"{_sci(pooled[relu].mean)}, elu {_sci(pooled[elu].mean)}."
            ]
        )

    _figure(a, w, rows, layers, names)


def _figure(
    a: Analysis,
    w: ReportWriter,
    rows: list[Variability],
    layers: list[str],
    names: dict[str, str],
) -> None:
    """Box plots with the individual seeds on top, one box per configuration and layer."""
    configs = a.configs()

    def of(config: str, layer: str) -> list[Variability]:
        return [r for r in rows if r.config == config and r.layer == layer]

    fig, axes = new_figure(2, 1, panel=(max(5.0, 0.9 * len(layers) * len(configs) / 2), 2.6))
    width = 0.8 / max(1, len(configs))
    for ax, field_name, ylabel in (
        (axes[0, 0], "variance", "variance of median over epochs"),
        (axes[1, 0], "diff_variance", "variance of epoch-to-epoch change"),
    ):
        for k, config in enumerate(configs):
            color = config_style(configs[config])["color"]
            for j, metric in enumerate(layers):
                values = [getattr(r, field_name) for r in of(config, names[metric])]
                values = [v for v in values if math.isfinite(v)]
                pos = j + (k - (len(configs) - 1) / 2) * width
                if values:
                    ax.boxplot(
                        [values],
                        positions=[pos],
                        widths=width * 0.8,
                        showfliers=False,
                        patch_artist=True,
                        boxprops={"facecolor": color, "alpha": 0.3},
                        medianprops={"color": color},
                    )
                    ax.scatter(np.full(len(values), pos), values, s=8, color=color, zorder=3)
            ax.plot([], [], color=color, lw=6, alpha=0.4, label=config)
        ax.set_xticks(range(len(layers)), [names[m] for m in layers])
        ax.set_xlim(-0.6, len(layers) - 0.4)
        ax.set_ylabel(ylabel)
        log_scale_if_positive(ax)
        ax.legend(ncols=min(4, len(configs)))
    axes[1, 0].set_xlabel("layer (median over its units)")
    figure_title(fig, f"Appendix C: variability of the median activation — {a.context()}")
    w.figure(
        fig,
        "appendix_c_median_variability",
        a.caption("Appendix C: distributions over seeds", paper_figure=False),
    )
