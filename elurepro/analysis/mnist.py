"""Reports for the MNIST experiments: Fig. 2 + Appendix C, and Fig. 3 (autoencoder)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from elurepro.analysis.collect import DIVERGED, FINISHED, MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import paired_differences, theory_diagnostics
from elurepro.analysis.format import Column, record_rows
from elurepro.analysis.headline import horizon, horizon_reason, window
from elurepro.analysis.plotting import (
    config_style,
    epoch_curve,
    figure_title,
    legend,
    log_scale_if_positive,
    new_figure,
    panel_title,
    plot_curve,
)
from elurepro.analysis.stats import Describe, describe
from elurepro.analysis.table import RunTable
from elurepro.analysis.tables import comparisons, per_epoch

MEANACT_METRICS = [
    ("act/median", 4),
    ("train/loss", 4),
    ("val/loss", 4),
    ("train/error", 2),
    ("val/error", 2),
    ("test/loss", 4),
    ("test/error", 2),
]


def _elu_config(a: Analysis, lr: float | None = None) -> str | None:
    """The paper's ELU configuration (no BN; at learning rate `lr` when given)."""
    for config, members in a.configs().items():
        m = members[0]
        if m.unit == "elu" and not m.batchnorm and (lr is None or m.lr == lr):
            return config
    return None


def _sci(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3g}"


def report_mnist_meanact(a: Analysis, w: ReportWriter) -> None:
    _fig2(a, w)
    w.section("Checks of the paper's claims")
    if a.claims_caveat():
        w.text(a.claims_caveat())
    w.bullets(meanact_checks(a))
    _meanact_finals(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
    theory_diagnostics.write(a, w)
    _appendix_c(a, w)
    per_epoch.write(a, w)


def _fig2(a: Analysis, w: ReportWriter) -> None:
    """Fig. 2a and 2b: the median unit activation and the cross-entropy over epochs."""
    configs = a.configs()
    context = a.context()
    fig, axes = new_figure(1, 2)
    ax_act, ax_loss = axes[0]
    for config, members in configs.items():
        style = config_style(members)
        color = style["color"]
        curve = epoch_curve(a.table(), members, "act/median")
        plot_curve(ax_act, curve, label=f"{config} (n={curve.n})", **style)
        train = epoch_curve(a.table(), members, "train/loss")
        plot_curve(ax_loss, train, label="_", color=color)
        val = epoch_curve(a.table(), members, "val/loss")
        plot_curve(ax_loss, val, label="_", color=color, linestyle=":")
    ax_act.axhline(0.0, color="black", lw=0.6)
    ax_act.set_xlabel("epoch")
    ax_act.set_ylabel("median over units of mean unit activation")
    panel_title(ax_act, "a", "median unit activation, mean ± std over seeds")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy (nats per image)")
    # Log scale: the late epochs differ by factors, not by amounts (std bands are clipped at 0).
    ax_loss.set_yscale("log")
    panel_title(ax_loss, "b", "cross-entropy: train solid, validation dotted")
    legend(fig, ax_act)
    figure_title(fig, f"Fig. 2, MNIST 8×128 network — {context}")
    w.section("Fig. 2: mean activation and learning speed")
    w.figure(fig, "fig2_mean_activation_and_loss", a.caption("Fig. 2"))


def meanact_checks(a: Analysis) -> list[str]:
    """Answers to Fig. 2's two claims, one sentence each, from finished members."""
    configs = a.configs()
    until = horizon(a)
    closeness, early_loss = {}, {}
    for config, members in configs.items():
        act = epoch_curve(a.table(), members, "act/median")
        during = act.x > 0  # epoch 0 is before training
        if during.any():
            closeness[config] = abs(float(np.mean(act.mean[during])))
        loss = epoch_curve(a.table(), members, "train/loss")
        early = (loss.x > 0) & (loss.x <= until)
        if early.any():
            early_loss[config] = float(np.mean(loss.mean[early]))
    elu = _elu_config(a)
    answers = []
    for question, scores in (
        (
            "Is ELU's median activation closest to zero of ELU, ReLU and LReLU (|mean over the "
            "training epochs| of the seed-averaged curve)?",
            closeness,
        ),
        (
            f"Does ELU's training loss fall fastest of ELU, ReLU and LReLU (lowest mean "
            f"train/loss over {window(a)}, {horizon_reason(a)})?",
            early_loss,
        ),
    ):
        # The paper's claim is about the units of its Fig. 2; other units are listed after it.
        paper = {c: v for c, v in scores.items() if _unit_of(configs, c) in FIG2_UNITS}
        answer = _claim(question, elu, paper)
        others = {c: v for c, v in scores.items() if c not in paper}
        if others:
            ranking = ", ".join(f"{c} {v:.4g}" for c, v in sorted(scores.items(), key=_second))
            answer += f" Among all units present: {ranking}."
        answers.append(answer)
    return answers


FIG2_UNITS = ("elu", "relu", "lrelu")  # the units the paper's Fig. 2 compares


def _unit_of(configs: dict[str, list[MemberRun]], config: str) -> str | None:
    members = configs[config]
    return None if members[0].batchnorm else members[0].unit


def _second(item: tuple[str, float]) -> float:
    return item[1]


def _claim(
    question: str, elu: str | None, scores: dict[str, float], lacking: Sequence[str] = ()
) -> str:
    """'question **yes/no** — config value, ...' where the lowest score wins."""
    without = f"; no finished value for {', '.join(lacking)}" if lacking else ""
    if elu is None or elu not in scores:
        return f"{question} **cannot tell**: no finished ELU members with this metric{without}."
    ranking = sorted(scores.items(), key=lambda kv: kv[1])
    answer = "yes" if ranking[0][0] == elu else "no"
    listing = ", ".join(f"{c} {v:.4g}" for c, v in ranking)
    return f"{question} **{answer}** — {listing} (finished members only{without})."


def _meanact_finals(a: Analysis, w: ReportWriter) -> None:
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


def _appendix_c(a: Analysis, w: ReportWriter) -> None:
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
    elu = _elu_config(a)
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

    _appendix_c_figure(a, w, rows, layers, names)


def _appendix_c_figure(
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


def report_mnist_autoencoder(a: Analysis, w: ReportWriter) -> None:
    lrs = sorted({m.lr for m in a.members if m.lr is not None}, reverse=True) or [None]
    _fig3(a, w, lrs)
    _ae_final_table(a, w, lrs)
    if a.claims_caveat():
        w.section("Checks of the paper's claims")
        w.text(a.claims_caveat())
        _ae_checks(a, w, lrs, section=False)
    else:
        _ae_checks(a, w, lrs)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)


def _ae_configs(a: Analysis, lr: float | None) -> dict[str, list[MemberRun]]:
    """The configurations trained at learning rate `lr`."""
    return {c: ms for c, ms in a.configs().items() if ms[0].lr == lr}


def _act(members: Sequence[MemberRun]) -> str:
    return members[0].unit + ("+bn" if members[0].batchnorm else "")


def _divergence_epochs(a: Analysis, members: Sequence[MemberRun]) -> list[float | None]:
    return [_divergence_epoch(a.table(), m) for m in members if m.status == DIVERGED]


def _fig3(a: Analysis, w: ReportWriter, lrs: list[float | None]) -> None:
    """Fig. 3: the reconstruction error over epochs, one panel per learning rate."""
    fig, axes = new_figure(1, len(lrs), panel=(3.0, 2.8))
    for ax, lr, letter in zip(axes[0], lrs, "abcdefgh"[: len(lrs)], strict=True):
        for members in _ae_configs(a, lr).values():
            _plot_ae_config(a, ax, members)
        log_scale_if_positive(ax)
        ax.set_xlabel("epoch")
        panel_title(ax, letter, f"learning rate {_lr_text(lr)}")
        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="black"), Line2D([], [], color="black", ls="--")]
        labels += ["train", "test"]
        ax.legend(handles, labels)
    axes[0, 0].set_ylabel("reconstruction error (squared error per image)")
    figure_title(fig, f"Fig. 3, MNIST deep autoencoder — {a.context()}")
    w.section("Fig. 3: autoencoder reconstruction error")
    w.figure(fig, "fig3_autoencoder", a.caption("Fig. 3"))
    w.text(
        "× marks the last finite value of a diverged member (thin lines: diverged members; "
        "thick lines: mean over finished members; members without a summary are drawn as "
        "'unfinished' with the last epoch they reached)."
    )


def _plot_ae_config(a: Analysis, ax: Axes, members: list[MemberRun]) -> None:
    """One configuration's curves: its diverged members thin, the finished ones' mean thick,
    unfinished members where nothing finished."""
    table = a.table()
    color = config_style(members)["color"]
    diverged = [m for m in members if m.status == DIVERGED]
    for m in diverged:
        for metric, ls in (("train/recon_error", "-"), ("test/recon_error", "--")):
            x, y = table.series(m, metric)
            ok = np.isfinite(y)
            ax.plot(x[ok], y[ok], color=color, linestyle=ls, lw=0.8, alpha=0.6)
            if ok.any():
                ax.plot([x[ok][-1]], [y[ok][-1]], marker="x", color=color, ms=7, mew=2)
    label = _act(members)
    if diverged:
        epochs = _divergence_epochs(a, members)
        at = ", ".join(f"{e:.0f}" if e is not None else "?" for e in epochs)
        label += f" (diverged at epoch {at})"
    train = epoch_curve(table, members, "train/recon_error")
    test = epoch_curve(table, members, "test/recon_error")
    plot_curve(ax, train, label=label, color=color)
    plot_curve(ax, test, label="_", color=color, linestyle="--")
    unfinished = [m for m in members if m.status not in (FINISHED, DIVERGED)]
    if train.n == 0 and unfinished:
        # A sweep still running (or cut short) is worth seeing, marked as such.
        for m in unfinished:
            for metric, ls in (("train/recon_error", "-"), ("test/recon_error", "--")):
                x, y = table.series(m, metric)
                ax.plot(
                    x,
                    y,
                    color=color,
                    linestyle=ls,
                    lw=1.2,
                    label=f"{label} (unfinished, epoch {x[-1]:.0f})"
                    if ls == "-" and len(x)
                    else "_",
                )
    elif train.n == 0 and diverged:
        ax.plot([], [], color=color, marker="x", label=label)


def _ae_final_table(a: Analysis, w: ReportWriter, lrs: list[float | None]) -> None:
    """Per configuration and learning rate: counts, final errors, divergence epochs."""
    rows = [
        _ae_row(a, config, members, _act(members), lr, _divergence_epochs(a, members))
        for lr in lrs
        for config, members in _ae_configs(a, lr).items()
    ]
    w.section("Final reconstruction error (finished members, mean ± std)")
    w.records(rows, AE_COLUMNS, csv_name="final_values.csv")


@dataclass
class AutoencoderRow:
    """One configuration at one learning rate: counts, final errors, divergence epochs."""

    unit: str
    lr: float | None
    finished: int
    diverged: int
    unfinished: int
    train: Describe
    test: Describe
    diverged_at: str


AE_COLUMNS: list[Column[AutoencoderRow]] = [
    Column("activation", "activation", lambda r: r.unit),
    Column("lr", "lr", lambda r: _lr_text(r.lr)),
    Column("finished", "finished", lambda r: r.finished),
    Column("diverged", "diverged", lambda r: r.diverged),
    Column("unfinished", "unfinished", lambda r: r.unfinished),
    Column("train recon error", "train_mean", lambda r: r.train.mean, lambda r: r.train.text(2)),
    Column("", "train_std", lambda r: r.train.std, markdown=False),
    Column("test recon error", "test_mean", lambda r: r.test.mean, lambda r: r.test.text(2)),
    Column("", "test_std", lambda r: r.test.std, markdown=False),
    Column("diverged at epoch", "diverged_at_epoch", lambda r: r.diverged_at),
]


def _lr_text(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:g}"


def _divergence_epoch(table: RunTable, m: MemberRun) -> float | None:
    step = m.diverged_at_step
    if step is not None:
        epoch = table.step_to_epoch(m, step)
        if epoch is not None:
            return epoch
    return table.last_epoch(m)


def _ae_row(
    a: Analysis, config: str, members: list[MemberRun], unit: str, lr: float | None, epochs: list
) -> AutoencoderRow:
    count = {s: sum(m.status == s for m in members) for s in (FINISHED, DIVERGED, "unfinished")}
    return AutoencoderRow(
        unit=unit,
        lr=lr,
        finished=count[FINISHED],
        diverged=count[DIVERGED],
        unfinished=count["unfinished"],
        train=describe(list(a.finals(config, "train/recon_error").values())),
        test=describe(list(a.finals(config, "test/recon_error").values())),
        diverged_at=", ".join(f"{e:.1f}" for e in epochs if e is not None) or "—",
    )


def _ae_checks(a: Analysis, w: ReportWriter, lrs: list, section: bool = True) -> None:
    items = []
    by_unit: dict[str, dict[float, float]] = {}
    for lr in lrs:
        for metric in ("train/recon_error", "test/recon_error"):
            scores, elu, lacking = {}, None, []
            for config, members in a.configs().items():
                if members[0].lr != lr:
                    continue
                stats = describe(list(a.finals(config, metric).values()))
                if stats.n:
                    scores[config] = stats.mean
                    if metric == "test/recon_error" and lr is not None:
                        unit = members[0].unit + ("+bn" if members[0].batchnorm else "")
                        by_unit.setdefault(unit, {})[lr] = stats.mean
                else:
                    lacking.append(config)
                if members[0].unit == "elu" and not members[0].batchnorm:
                    elu = config
            question = f"lr {_lr_text(lr)}: is ELU's final {metric} the lowest?"
            items.append(_claim(question, elu, scores, lacking))
    for unit, errors in by_unit.items():
        if len(errors) < 2:
            continue
        ordered = [errors[lr] for lr in sorted(errors, reverse=True)]
        answer = (
            "yes" if all(x < y for x, y in zip(ordered[:-1], ordered[1:], strict=True)) else "no"
        )
        listing = ", ".join(f"lr {lr:g}: {errors[lr]:.4g}" for lr in sorted(errors, reverse=True))
        items.append(
            f"{unit}: do higher learning rates give lower final test/recon_error? "
            f"**{answer}** — {listing}."
        )
    if section:
        w.section("Checks of the paper's claims")
    w.bullets(items)
