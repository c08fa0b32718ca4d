"""Paired statistics: pairing by seed, Wilcoxon signed-rank tests, mean ± std."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Describe:
    """Mean and sample standard deviation (ddof=1) of n finished members."""

    n: int
    mean: float
    std: float

    def text(self, digits: int = 2) -> str:
        if self.n == 0:
            return "—"
        if self.n == 1:
            return f"{self.mean:.{digits}f} (n=1)"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"


def describe(values: Sequence[float]) -> Describe:
    """Mean ± sample std of the finite values; std is NaN below two values."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return Describe(0, math.nan, math.nan)
    std = float(np.std(arr, ddof=1)) if arr.size > 1 else math.nan
    return Describe(int(arr.size), float(np.mean(arr)), std)


@dataclass(frozen=True)
class Pairing:
    """Values of two configurations matched by seed, and the seeds that have no partner."""

    seeds: list[int]
    a: np.ndarray
    b: np.ndarray
    only_a: list[int]
    only_b: list[int]


def pair_by_seed(a: Mapping[int, float], b: Mapping[int, float]) -> Pairing:
    """Match `a[seed]` with `b[seed]`; seeds present on one side only are listed, not used."""
    seeds = sorted(set(a) & set(b))
    return Pairing(
        seeds=seeds,
        a=np.asarray([a[s] for s in seeds], dtype=float),
        b=np.asarray([b[s] for s in seeds], dtype=float),
        only_a=sorted(set(a) - set(b)),
        only_b=sorted(set(b) - set(a)),
    )


def smallest_exact_p(n: int) -> tuple[float, float]:
    """Smallest p the exact signed-rank test can give with n untied pairs: (one-, two-sided)."""
    if n <= 0:
        return math.nan, math.nan
    return 0.5**n, min(1.0, 2 * 0.5**n)


def _method_name(d: np.ndarray) -> str:
    # Mirrors scipy's method='auto' choice so the report can say which p it got.
    nonzero = d[d != 0]
    has_ties = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if len(d) > 50:
        return "normal approximation"
    if not has_ties and len(nonzero) == len(d):
        return "exact"
    if len(d) <= 13:
        return "exact permutation (ties or zero differences)"
    return "normal approximation (ties or zero differences)"


def wilcoxon_p(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, str]:
    """Wilcoxon signed-rank on pairs (a_i, b_i): (p for a < b, two-sided p, method).

    `alternative='less'` tests whether the differences a - b are centred below zero, i.e.
    whether `a` (ELU's error, say) is lower than `b`.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two equally long 1-d samples, got shapes {a.shape}, {b.shape}")
    d = a - b
    if d.size == 0 or np.all(d == 0):
        return math.nan, math.nan, "not computable (no non-zero differences)"
    less = stats.wilcoxon(a, b, alternative="less", method="auto")
    two = stats.wilcoxon(a, b, alternative="two-sided", method="auto")
    return float(less.pvalue), float(two.pvalue), _method_name(d)


@dataclass
class Comparison:
    """A paired comparison of configuration A against B on one metric (lower is better)."""

    label: str
    metric: str
    group_a: str
    group_b: str
    n: int
    a_wins: int
    ties: int
    p_less: float
    p_two_sided: float
    min_p_less: float
    min_p_two_sided: float
    method: str
    mean_a: float = math.nan
    mean_b: float = math.nan
    seeds: list[int] = field(default_factory=list)
    only_a: list[int] = field(default_factory=list)
    only_b: list[int] = field(default_factory=list)
    note: str = ""

    @property
    def k_of_n(self) -> str:
        return f"{self.a_wins} of {self.n}"


def compare(
    a: Mapping[int, float],
    b: Mapping[int, float],
    *,
    group_a: str,
    group_b: str,
    metric: str,
    label: str | None = None,
) -> Comparison:
    """Pair `a` and `b` by seed and test whether A's values are lower than B's.

    A comparison without pairs is returned with NaN p-values and a note that says why.
    """
    pairing = pair_by_seed(a, b)
    finite = np.isfinite(pairing.a) & np.isfinite(pairing.b)
    seeds = [s for s, ok in zip(pairing.seeds, finite, strict=True) if ok]
    xa, xb = pairing.a[finite], pairing.b[finite]
    notes = []
    if pairing.only_a:
        notes.append(f"{group_a} seed(s) {pairing.only_a} have no {group_b} partner")
    if pairing.only_b:
        notes.append(f"{group_b} seed(s) {pairing.only_b} have no {group_a} partner")
    if not finite.all():
        dropped = [s for s, ok in zip(pairing.seeds, finite, strict=True) if not ok]
        notes.append(f"seed(s) {dropped} have a non-finite value and are left out")
    n = len(seeds)
    if n == 0:
        notes.insert(0, "no pairs: the test cannot be computed")
        p_less, p_two, method = math.nan, math.nan, "not computable (no pairs)"
    else:
        p_less, p_two, method = wilcoxon_p(xa, xb)
    min_less, min_two = smallest_exact_p(n)
    return Comparison(
        label=label or f"{group_a} vs {group_b}",
        metric=metric,
        group_a=group_a,
        group_b=group_b,
        n=n,
        a_wins=int(np.sum(xa < xb)),
        ties=int(np.sum(xa == xb)),
        p_less=p_less,
        p_two_sided=p_two,
        min_p_less=min_less,
        min_p_two_sided=min_two,
        method=method,
        mean_a=float(np.mean(xa)) if n else math.nan,
        mean_b=float(np.mean(xb)) if n else math.nan,
        seeds=seeds,
        only_a=pairing.only_a,
        only_b=pairing.only_b,
        note="; ".join(notes),
    )


def min_p_note(n: int) -> str:
    """The §6 warning on the smallest p-value that n pairs can reach, computed from n."""
    if n <= 0:
        return "No paired comparison had any pairs."
    one, two = smallest_exact_p(n)

    def reach(p: float) -> str:
        return "reachable" if p < 0.001 else "not reachable"

    return (
        f"With n = {n} pairs the exact signed-rank test can give at best p = {one:.5f} one-sided "
        f"(all {n} pairs favour one side) and p = {two:.5f} two-sided, so p < 0.001 is "
        f"{reach(one)} one-sided and {reach(two)} two-sided."
    )
