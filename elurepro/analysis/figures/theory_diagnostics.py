"""§3, the theory measured: the ``theory/...`` diagnostics over training, per unit.

The trainer logs them with ``monitor.theory=true`` (``elurepro/theory.py``). This section draws
them beside the training loss, tabulates them early and late in training, and answers the
theory's two claims with paired tests over seeds: does ELU keep q and the angle between the
gradient and the unit natural gradient smaller than ReLU and LReLU, and does the ordering of the
units by these diagnostics match their ordering by early training speed?
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from elurepro.analysis.collect import FINISHED, MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.format import Column, fmt, fmt_p
from elurepro.analysis.plotting import (
    config_style,
    finished_curve,
    legend,
    log_scale_if_positive,
    new_figure,
    panel_title,
    plot_curve,
)
from elurepro.analysis.stats import compare, describe
from elurepro.analysis.table import RunTable


@dataclass(frozen=True)
class Quantity:
    metric: str  # pooled over layers; per layer: <metric>/layer<N>
    label: str
    angle: bool = False  # logged as a cosine, shown as the angle in degrees


QUANTITIES = (
    Quantity("theory/mu_abs_median", "median |μ| of the incoming units"),
    Quantity("theory/q", "q = μᵀ(E[zzᵀ] + εI)⁻¹μ"),
    Quantity("theory/q_delta", "δ²-weighted q (median over units)"),
    Quantity("theory/bias_shift_ratio", "|μᵀΔw| / |Δb| (median over units)"),
    Quantity("theory/ng_cos", "angle(gradient, unit natural gradient), degrees", angle=True),
)
# The units the theory's claims name, and the ones ELU is held against.
RIVALS = ("relu", "lrelu")


def _values(table: RunTable, m: MemberRun, q: Quantity) -> tuple[np.ndarray, np.ndarray]:
    """The member's curve of the quantity against epochs, epoch 0 (before training) left out."""
    x, y = table.epoch_series(m, q.metric)
    keep = (x > 0) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if q.angle:
        y = np.degrees(np.arccos(np.clip(y, -1.0, 1.0)))
    return x, y


def _early_late(table: RunTable, m: MemberRun, q: Quantity) -> tuple[float, float]:
    """Mean over the first tenth of the logged epochs (at least one point), and the last value."""
    _, y = _values(table, m, q)
    if not y.size:
        return math.nan, math.nan
    head = max(1, math.ceil(0.1 * y.size))
    return float(np.mean(y[:head])), float(y[-1])


def _during(table: RunTable, m: MemberRun, q: Quantity) -> float:
    """The member's mean of the quantity over training: what the paired tests compare."""
    _, y = _values(table, m, q)
    return float(np.mean(y)) if y.size else math.nan


@dataclass(frozen=True)
class Row:
    config: str
    quantity: Quantity
    early: tuple[float, float, int]  # mean, std, n over seeds
    late: tuple[float, float, int]


def _rows(a: Analysis, quantities: Sequence[Quantity]) -> list[Row]:
    rows = []
    for config, members in a.configs().items():
        done = [m for m in members if m.status == FINISHED]
        for q in quantities:
            pairs = [_early_late(a.table(), m, q) for m in done]
            early = describe([e for e, _ in pairs])
            late = describe([v for _, v in pairs])
            rows.append(
                Row(config, q, (early.mean, early.std, early.n), (late.mean, late.std, late.n))
            )
    return rows


def _mean_std(v: tuple[float, float, int]) -> str:
    mean, std, n = v
    if n == 0:
        return "—"
    return f"{mean:.4g} ± {std:.2g}" if n > 1 else f"{mean:.4g}"


COLUMNS: list[Column[Row]] = [
    Column("configuration", "configuration", lambda r: r.config),
    Column("quantity", "quantity", lambda r: r.quantity.metric, lambda r: r.quantity.label),
    Column(
        "early (first 10 % of epochs)",
        "early_mean",
        lambda r: r.early[0],
        lambda r: _mean_std(r.early),
    ),  # fmt: skip
    Column("early std", "early_std", lambda r: r.early[1], markdown=False),
    Column("late (last epoch)", "late_mean", lambda r: r.late[0], lambda r: _mean_std(r.late)),
    Column("late std", "late_std", lambda r: r.late[1], markdown=False),
    Column("n", "n", lambda r: r.late[2]),
]


def write(a: Analysis, w: ReportWriter, speed_metric: str = "train/loss") -> None:
    """The section, when the members logged the diagnostics (``monitor.theory=true``)."""
    table = a.table()
    logged = table.logged()
    quantities = [q for q in QUANTITIES if q.metric in logged]
    if not quantities:
        return
    w.section("The theory, measured (§3)")
    w.text(
        "Per layer that receives hidden activations, on a fixed batch at every monitor point "
        "(`monitor.theory=true`, `elurepro/theory.py`): the incoming units' mean activation μ, "
        "the quadratic form q of the mean with the inverse second moment (0 for zero-mean "
        "inputs, towards 1 as the mean dominates), its δ²-weighted version, the bias shift a "
        "plain SGD weight update causes (μᵀΔw) against the bias update Δb, and the angle "
        "between each unit's ordinary gradient and its (damped) unit natural gradient F⁻¹g. "
        "Pooled over layers; mean ± std over seeds; epoch 0 (before training) left out. "
        "In the answers below, **yes** means ELU lower with a one-sided Wilcoxon p < 0.05 over "
        "the seed pairs, and an ordering agrees when Spearman's ρ > 0 with p < 0.05."
    )
    configs = a.configs()
    fig, axes = new_figure(2, 3)
    panels = [("train", f"{speed_metric} (Fig. 2b)")] + [(q, q.label) for q in quantities]
    for ax, (what, label), letter in zip(axes.flat, panels, "abcdef", strict=False):

        def series(m: MemberRun, what=what) -> tuple[np.ndarray, np.ndarray]:
            if what == "train":
                return table.epoch_series(m, speed_metric)
            return _values(table, m, what)

        for config, members in configs.items():
            curve = finished_curve(members, series)
            plot_curve(ax, curve, label=f"{config} (n={curve.n})", **config_style(members))
        if what == "train":
            log_scale_if_positive(ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        panel_title(ax, letter, label)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    legend(fig, axes[0, 0])
    fig.suptitle(f"§3 diagnostics over training (mean ± std over seeds) — {a.context()}")
    w.figure(fig, "theory_diagnostics", a.caption("§3 diagnostics", paper_figure=False))

    rows = _rows(a, quantities)
    w.records(rows, COLUMNS, csv_name="theory_diagnostics.csv")
    w.bullets(theory_claims(a, quantities, speed_metric))


def theory_claims(
    a: Analysis, quantities: Sequence[Quantity], speed_metric: str = "train/loss"
) -> list[str]:
    """The theory's claims, answered from the runs: paired tests over seeds of each member's
    mean over training, ELU against each rival; and rank agreement across units."""
    configs = a.configs()
    plain = {m.unit: c for c, ms in configs.items() for m in ms[:1] if not m.batchnorm}
    out = []
    if a.claims_caveat():
        out.append(a.claims_caveat())
    elu = plain.get("elu")
    by_name = {q.metric: q for q in quantities}
    for metric in ("theory/q", "theory/ng_cos"):
        q = by_name.get(metric)
        if q is None or elu is None:
            continue
        mine = {m.seed: _during(a.table(), m, q) for m in a.finished(elu)}
        for rival in RIVALS:
            if rival not in plain:
                continue
            theirs = {m.seed: _during(a.table(), m, q) for m in a.finished(plain[rival])}
            c = compare(mine, theirs, group_a=elu, group_b=plain[rival], metric=metric)
            answer = "yes" if c.n and c.p_less < 0.05 else ("no" if c.n else "cannot tell")
            out.append(
                f"Does ELU keep {q.label} smaller than {rival} over training (each member's "
                f"mean over epochs, paired by seed)? **{answer}** — ELU {fmt(c.mean_a, 4)}, "
                f"{rival} {fmt(c.mean_b, 4)}; ELU lower on {c.k_of_n} seeds, Wilcoxon "
                f"V = {fmt(c.v, 1)}, p one-sided {fmt_p(c.p_less)}, two-sided "
                f"{fmt_p(c.p_two_sided)} ({c.method}; the smallest p {c.n} pairs can reach "
                f"one-sided is {fmt_p(c.min_p_less)})."
            )
    out += _ordering(a, plain, quantities, speed_metric)
    return out


EXACT_UP_TO = 8  # units: every ordering is enumerated (8! = 40,320)


def rank_agreement(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """Spearman's ρ of a and b, and the one-sided p of a ρ this large under random orderings:
    exact (every permutation) for few units, where the usual approximation is meaningless
    (it gives p = 0 for three units in the same order), else scipy's t approximation."""
    rho = float(stats.spearmanr(a, b).statistic)
    n = len(a)
    if n <= EXACT_UP_TO:
        # ρ is Pearson's r of the ranks (mid-ranks for ties): r of rank(a) with every
        # reordering of rank(b) at once.
        ra = stats.rankdata(a) - (n + 1) / 2
        rb = stats.rankdata(b) - (n + 1) / 2
        shuffled = rb[np.array(list(itertools.permutations(range(n))))]
        rhos = shuffled @ ra / np.sqrt((ra @ ra) * (rb @ rb))
        p = float(np.mean(rhos >= rho - 1e-12))
        return rho, p, f"exact over all {math.factorial(n):,} orderings"
    return rho, float(stats.spearmanr(a, b, alternative="greater").pvalue), "t approximation"


def _ordering(
    a: Analysis, plain: dict[str, str], quantities: Sequence[Quantity], speed_metric: str
) -> list[str]:
    """Units ordered by each diagnostic against units ordered by early training loss."""
    speed: dict[str, float] = {}
    for unit, config in plain.items():
        values = []
        for m in a.finished(config):
            x, y = a.table().epoch_series(m, speed_metric)
            keep = (x > 0) & np.isfinite(y)
            if keep.any():
                # The first tenth of training: where the paper says ELU learns faster.
                head = max(1, math.ceil(0.1 * keep.sum()))
                values.append(float(np.mean(y[keep][:head])))
        if values:
            speed[unit] = float(np.mean(values))
    if len(speed) < 3:
        return []
    by_speed = sorted(speed, key=speed.get)
    out = []
    for q in quantities:
        if q.metric not in ("theory/q", "theory/ng_cos", "theory/mu_abs_median"):
            continue
        score = {}
        for unit in speed:
            values = [_during(a.table(), m, q) for m in a.finished(plain[unit])]
            values = [v for v in values if math.isfinite(v)]
            if values:
                score[unit] = float(np.mean(values))
        units = [u for u in by_speed if u in score]
        if len(units) < 3:
            continue
        rho, p, method = rank_agreement([speed[u] for u in units], [score[u] for u in units])
        by_score = sorted(units, key=score.get)
        agree = "yes" if rho > 0 and p < 0.05 else ("partly" if rho > 0 else "no")
        out.append(
            f"Does ordering the units by {q.label} (smallest first: {', '.join(by_score)}) match "
            f"ordering them by early training loss (fastest first: {', '.join(units)})? "
            f"**{agree}** — Spearman ρ = {rho:.2f} over {len(units)} units (one-sided p = "
            f"{p:.3g}, {method})."
        )
    return out
