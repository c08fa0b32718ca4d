"""Headline metrics per experiment, and paired comparisons built from the units present.

Every report compares each unit with the baseline (`--baseline`, default ELU) in the same
setting (data set, BN, learning rate), paired by seed, and each unit with BN against itself
without BN, on the experiment's headline metrics. Error rates are first rounded to the
evaluation's resolution, 100/N for N evaluation images, so that equal counts are exact ties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from elurepro.analysis.collect import FINISHED, MemberRun
from elurepro.analysis.context import Analysis
from elurepro.analysis.format import Column, fmt, fmt_p
from elurepro.analysis.reported import find_reported
from elurepro.analysis.stats import Comparison, compare

# Error rates without `eval_images` in the summary are rounded to this many percentage points
# (fine enough for a million evaluation images, coarse enough to remove float noise).
FALLBACK_RESOLUTION = 1e-4
# How far (in images) a logged error may sit from a whole count and still be that count: an
# error logged in float32 is off by up to ~6e-8 relative, 0.06 images at a million images.
GRID_TOLERANCE = 0.1


@dataclass(frozen=True)
class Headline:
    """One headline quantity of an experiment (lower is better).

    `metrics` are candidate metric names, the first that any member logged is used (ImageNet:
    the full validation set when measured, else the 5k subset). `reduce` turns a member's
    records into one number: its final value, |its mean over the training epochs| (mean
    activation: closeness to zero), or its mean over epochs 1..H (learning speed, H from
    results/reported.csv's `curves_flat_after`).
    """

    key: str
    label: str
    metrics: tuple[str, ...]
    error: bool = False
    reduce: str = "final"
    leaderboard: bool = True


_FINAL_ERROR = Headline("test_error", "final test error (%)", ("test/error",), error=True)
_FINAL_LOSS = Headline("train_loss", "final training loss", ("train/loss",))

HEADLINES: dict[str, tuple[Headline, ...]] = {
    "mnist_meanact": (
        Headline(
            "abs_median_activation",
            "|median activation|, mean over training epochs",
            ("act/median",),
            reduce="abs_mean",
        ),
        Headline(
            "early_train_loss",
            "training loss, mean over epochs 1–H",
            ("train/loss",),
            reduce="early_mean",
        ),
    ),
    "mnist_autoencoder": (
        Headline("test_recon_error", "final test reconstruction error", ("test/recon_error",)),
        Headline(
            "train_recon_error",
            "final training reconstruction error",
            ("train/recon_error",),
            leaderboard=False,
        ),
    ),
    "cifar100_11layer": (_FINAL_ERROR, _FINAL_LOSS),
    "cifar_18layer": (_FINAL_ERROR, _FINAL_LOSS),
    "imagenet_15layer_spp": (
        Headline(
            "top5_error",
            "final top-5 error (%)",
            ("val_full/top5_error", "val/top5_error"),
            error=True,
        ),
        Headline(
            "top1_error", "final top-1 error (%)", ("val_full/error", "val/error"), error=True
        ),
    ),
}


# An experiment the paper does not have: its final error (whichever split it evaluates) and loss.
GENERIC = (
    Headline(
        "final_error", "final error (%)", ("test/error", "val/error", "train/error"), error=True
    ),
    _FINAL_LOSS,
)


def headlines_for(experiment: str) -> tuple[Headline, ...]:
    return HEADLINES.get(experiment, GENERIC)


def figure_tags(experiment: str) -> list[str]:
    """The metrics of the paper's figure for ``experiment`` (its headline metrics: Fig. 2's
    median activation and training loss, ...), for TensorBoard links."""
    return list(dict.fromkeys(metric for h in headlines_for(experiment) for metric in h.metrics))


def horizon(a: Analysis) -> float:
    """H of the learning-speed window (epochs 1–H): where the paper says the curves flatten
    (epoch 25), or the last epoch these runs reached when they are shorter (a 3-epoch demo)."""
    table = a.table()
    finished = [m for m in a.members if m.status == FINISHED] or a.members
    ends = [x[-1] for m in finished if (x := table.epoch_series(m, "train/loss")[0]).size]
    return min(_paper_horizon(a), max(ends)) if ends else _paper_horizon(a)


def window(a: Analysis) -> str:
    """The learning-speed window in words: ``epochs 1–25``, ``the first 0.6 epochs``."""
    h = horizon(a)
    return f"epochs 1–{h:g}" if h >= 1 else f"the first {h:g} epochs"


def horizon_reason(a: Analysis) -> str:
    """Why the window ends at ``horizon(a)``, as a clause of the report's sentences."""
    paper = _paper_horizon(a)
    if horizon(a) < paper:
        return f"all of these runs; the paper's window is epochs 1–{paper:g}"
    return "where the paper says the curves flatten"


def _paper_horizon(a: Analysis) -> float:
    flat = find_reported(a.reported, a.experiment, "curves_flat_after", "all")
    return flat.value if flat else 25.0


def headline_metric(a: Analysis, h: Headline) -> str | None:
    """The first of `h.metrics` that some finished member logged, else None."""
    table = a.table()
    for metric in h.metrics:
        if any(table.final(m, metric) is not None for m in a.members if m.status == FINISHED):
            return metric
    return None


def member_value(a: Analysis, m: MemberRun, h: Headline, metric: str) -> float | None:
    """One member's value of headline `h` (None when it has none)."""
    table = a.table()
    if h.reduce == "final":
        return table.final(m, metric)
    x, y = table.epoch_series(m, metric)
    if h.reduce == "early_mean":
        keep = x <= horizon(a)
        x, y = x[keep], y[keep]
    if not y.size or not np.isfinite(y).all():
        return None
    mean = float(np.mean(y))
    return abs(mean) if h.reduce == "abs_mean" else mean


def label_of(a: Analysis, h: Headline) -> str:
    return h.label.replace("epochs 1–H", window(a))


def headline_values(a: Analysis, config: str, h: Headline, metric: str) -> dict[int, float]:
    """seed -> value for the finished members of `config`."""
    out = {}
    for m in a.finished(config):
        value = member_value(a, m, h, metric)
        if value is not None:
            out[m.seed] = value
    return out


def resolution(
    a: Analysis, configs: Sequence[str], h: Headline, metric: str
) -> tuple[float | None, str]:
    """The grid error rates of `configs` are rounded to, and a note saying which.

    100/N when every finished member's summary gives the same N for the metric's split and
    every value lies on that grid; else FALLBACK_RESOLUTION, with the reason.
    """
    if not h.error:
        return None, "as logged"
    split = metric.split("/")[0]
    members = [m for c in configs for m in a.finished(c)]
    counts = {m.eval_images(split) for m in members}
    if len(counts) == 1 and None not in counts:
        n = int(next(iter(counts)))
        values = [member_value(a, m, h, metric) for m in members]
        grid = np.asarray([v * n / 100 for v in values if v is not None], dtype=float)
        if np.all(np.abs(grid - np.rint(grid)) <= GRID_TOLERANCE):
            return 100.0 / n, f"counts of {n:,} {split} images (100/N = {100.0 / n:.4g} pp)"
        why = f"values are not multiples of 100/{n}"
    elif None in counts:
        why = f"no eval_images[{split!r}] in summary.json"
    else:
        why = f"the members evaluated different numbers of images ({sorted(counts)})"
    return FALLBACK_RESOLUTION, f"rounded to {FALLBACK_RESOLUTION:g} pp ({why})"


@dataclass
class UnitComparison:
    """A row of the comparisons table: what was compared, in which setting, and the test."""

    kind: str  # "vs baseline", "BN vs no BN", "paper §6"
    headline: Headline
    metric_label: str
    metric: str
    a_unit: str
    setting: str
    result: Comparison
    grid: str
    batchnorm: bool = False


def _setting_text(a: Analysis, config: str) -> str:
    info = a.info(config)
    parts = ["BN" if info.batchnorm else "no BN"]
    if info.lr is not None and len({i.lr for i in a.infos()}) > 1:
        parts.append(f"lr {info.lr:g}")
    if a.multi_dataset:
        parts.append(info.dataset)
    return ", ".join(parts)


def pair(
    a: Analysis, first: str, second: str, h: Headline, metric: str, kind: str
) -> UnitComparison:
    """Compare configuration `first` (A) with `second` (B) on headline `h`."""
    grid, grid_note = resolution(a, [first, second], h, metric)
    result = compare(
        headline_values(a, first, h, metric) if first in a.configs() else {},
        headline_values(a, second, h, metric) if second in a.configs() else {},
        group_a=first,
        group_b=second,
        metric=metric,
        resolution=grid,
    )
    absent = [c for c in (first, second) if c not in a.configs()]
    if absent:
        result.note = f"no members of {', '.join(absent)}"
    configs = a.configs()
    info = a.info(first) if first in configs else None
    return UnitComparison(
        kind=kind,
        headline=h,
        metric_label=label_of(a, h),
        metric=metric,
        a_unit=info.unit if info else first.removesuffix("+bn"),
        setting=_setting_text(a, first) if info else "—",
        result=result,
        grid=grid_note,
        batchnorm=info.batchnorm if info else first.endswith("+bn"),
    )


def unit_comparisons(a: Analysis) -> list[UnitComparison]:
    """Every unit against the baseline in its setting, and every unit's BN against no BN."""
    out = []
    for h in headlines_for(a.experiment):
        metric = headline_metric(a, h)
        if metric is None:
            continue
        infos = a.infos()
        for info in infos:
            if info.unit == a.baseline:
                continue
            base = a.find_config(a.baseline, info.setting)
            if base is not None:
                out.append(pair(a, info.name, base, h, metric, "vs baseline"))
        for info in infos:
            if not info.batchnorm:
                continue
            plain = a.find_config(info.unit, (info.dataset, False, info.lr))
            if plain is not None:
                out.append(pair(a, info.name, plain, h, metric, "BN vs no BN"))
    return out


def _stat(value: float) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:g}"


def comparison_columns(paper: bool = False) -> list[Column[UnitComparison]]:
    """The columns of a comparisons table (Markdown shows ties, zeros and method too)."""

    def c(r: UnitComparison) -> Comparison:
        return r.result

    columns: list[Column[UnitComparison]] = [
        Column("comparison (A vs B)", "comparison", lambda r: c(r).label),
        Column("kind", "kind", lambda r: r.kind, markdown=not paper),
        Column("setting", "setting", lambda r: r.setting),
        Column("metric", "metric", lambda r: c(r).metric, lambda r: r.metric_label),
        Column("A", "group_a", lambda r: c(r).group_a, markdown=False),
        Column("B", "group_b", lambda r: c(r).group_b, markdown=False),
        Column("n", "n", lambda r: c(r).n),
        Column("A better", "a_better", lambda r: c(r).a_wins, lambda r: c(r).k_of_n),
        Column("ties (A = B)", "ties", lambda r: c(r).ties),
        Column("B better", "b_better", lambda r: c(r).b_wins),
        Column("mean A", "mean_a", lambda r: c(r).mean_a, lambda r: fmt(c(r).mean_a, 4)),
        Column("mean B", "mean_b", lambda r: c(r).mean_b, lambda r: fmt(c(r).mean_b, 4)),
        Column(
            "mean A − B",
            "mean_difference",
            lambda r: c(r).mean_difference,
            lambda r: fmt(c(r).mean_difference, 4),
        ),
        Column("V (W+)", "v", lambda r: c(r).v, lambda r: _stat(c(r).v)),
        Column("W = min(W+, W−)", "w", lambda r: c(r).w, lambda r: _stat(c(r).w)),
        Column("z", "z", lambda r: c(r).z, markdown=False),
        Column(
            "p one-sided (A < B)",
            "p_one_sided_less",
            lambda r: c(r).p_less,
            lambda r: fmt_p(c(r).p_less),
        ),
        Column(
            "p two-sided",
            "p_two_sided",
            lambda r: c(r).p_two_sided,
            lambda r: fmt_p(c(r).p_two_sided),
        ),
        Column("method (scipy)", "method", lambda r: c(r).method),
        Column("non-zero pairs", "n_nonzero", lambda r: c(r).n_nonzero),
        Column("tied abs(d)", "tied_abs_differences", lambda r: c(r).tied, markdown=False),
        Column(
            "smallest p (one/two-sided)",
            "smallest_p_one_sided",
            lambda r: c(r).min_p_less,
            lambda r: f"{fmt_p(c(r).min_p_less)} / {fmt_p(c(r).min_p_two_sided)}",
        ),
        Column("", "smallest_p_two_sided", lambda r: c(r).min_p_two_sided, markdown=False),
        Column("values", "resolution", lambda r: r.grid),
        Column(
            "note",
            "note",
            lambda r: c(r).note.strip("; "),
        ),
        Column("differences A − B by seed", "differences", _diffs, markdown=False),
        Column("seeds", "seeds", lambda r: " ".join(map(str, c(r).seeds)), markdown=False),
    ]
    return columns


def _diffs(r: UnitComparison) -> str:
    return " ".join(f"{d:.10g}" for d in r.result.differences)
