"""Fig. 2: the median unit activation and the cross-entropy over epochs, and its two claims."""

from __future__ import annotations

import numpy as np

from elurepro.analysis.claims import claim, elu_config
from elurepro.analysis.collect import MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.headline import horizon, horizon_reason, window
from elurepro.analysis.plotting import (
    config_style,
    epoch_curve,
    figure_title,
    legend,
    new_figure,
    panel_title,
    plot_curve,
)


def write(a: Analysis, w: ReportWriter) -> None:
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


def checks(a: Analysis) -> list[str]:
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
    elu = elu_config(a)
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
        answer = claim(question, elu, paper)
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
