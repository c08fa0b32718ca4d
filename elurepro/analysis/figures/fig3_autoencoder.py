"""Fig. 3: the autoencoder's reconstruction error over epochs per learning rate, its claims."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from elurepro.analysis.claims import claim
from elurepro.analysis.collect import DIVERGED, FINISHED, MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.lr_sweep import activation, configs_at, divergence_epochs, lr_text
from elurepro.analysis.plotting import (
    config_style,
    epoch_curve,
    figure_title,
    log_scale_if_positive,
    new_figure,
    panel_title,
    plot_curve,
)
from elurepro.analysis.stats import describe


def write(a: Analysis, w: ReportWriter, lrs: list[float | None]) -> None:
    """Fig. 3: the reconstruction error over epochs, one panel per learning rate."""
    fig, axes = new_figure(1, len(lrs), panel=(3.0, 2.8))
    for ax, lr, letter in zip(axes[0], lrs, "abcdefgh"[: len(lrs)], strict=True):
        for members in configs_at(a, lr).values():
            _plot_config(a, ax, members)
        log_scale_if_positive(ax)
        ax.set_xlabel("epoch")
        panel_title(ax, letter, f"learning rate {lr_text(lr)}")
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


def _plot_config(a: Analysis, ax: Axes, members: list[MemberRun]) -> None:
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
    label = activation(members)
    if diverged:
        epochs = divergence_epochs(a, members)
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


def checks(a: Analysis, lrs: list[float | None]) -> list[str]:
    """Answers to Fig. 3's claims: ELU lowest at each learning rate, higher rates lower."""
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
            question = f"lr {lr_text(lr)}: is ELU's final {metric} the lowest?"
            items.append(claim(question, elu, scores, lacking))
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
    return items
