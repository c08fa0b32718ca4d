"""Paired statistics: pairing by seed, Wilcoxon signed-rank tests, mean ± std."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    """Smallest p the exact signed-rank test can give with n non-zero pairs: (one-, two-sided).

    Ties among |differences| do not change it: only the all-one-sign pattern reaches it.
    """
    if n <= 0:
        return math.nan, math.nan
    return 0.5**n, min(1.0, 2 * 0.5**n)


# Exhaustive sign-flip enumeration (2^n patterns) is used for tied |differences| up to here;
# beyond, scipy's normal approximation.
MAX_PERMUTATION_PAIRS = 16
# scipy's exact signed-rank distribution is used up to here (its own 'auto' limit).
MAX_EXACT_PAIRS = 50

EXACT = "exact"
EXACT_NO_ZEROS = "exact with zeros removed"
PERMUTATION = "exact permutation (mid-ranks for tied magnitudes)"
NORMAL = "normal approximation (tie-corrected)"
NOT_COMPUTABLE = "not computable (no non-zero differences)"


@dataclass(frozen=True)
class SignedRank:
    """Wilcoxon signed-rank test of differences d (H1 for `p_less`: d centred below zero).

    `v` is V = W+, the sum of the ranks of the positive differences (R's ``V``, scipy's one-sided
    statistic); `w` is min(W+, W-), scipy's two-sided statistic. Zero differences are removed
    before ranking (Wilcoxon's method) and counted in `zeros`; `tied` counts the non-zero
    differences whose |d| equals another's. `method` says what scipy was asked to do.
    """

    n: int
    n_nonzero: int
    zeros: int
    tied: int
    v: float
    w: float
    p_less: float
    p_two_sided: float
    method: str
    z: float = math.nan


def signed_rank(d: Sequence[float]) -> SignedRank:
    """Wilcoxon signed-rank test of the paired differences `d` with an explicit scipy method.

    Without zeros and ties: scipy's exact null distribution. Zeros are removed first (the exact
    test then runs on the non-zero pairs). Tied |d| make that distribution wrong, so up to
    MAX_PERMUTATION_PAIRS pairs scipy enumerates all 2^n sign flips with mid-ranks; beyond
    that, and beyond MAX_EXACT_PAIRS, the tie-corrected normal approximation.
    """
    d = np.asarray(d, dtype=float)
    if d.ndim != 1:
        raise ValueError(f"need a 1-d array of differences, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("differences must be finite")
    nonzero = d[d != 0]
    n, k = int(d.size), int(nonzero.size)
    _, counts = np.unique(np.abs(nonzero), return_counts=True)
    tied = int(counts[counts > 1].sum())
    if k == 0:
        return SignedRank(n, 0, n, 0, math.nan, math.nan, math.nan, math.nan, NOT_COMPUTABLE)
    z = math.nan
    if tied == 0 and k <= MAX_EXACT_PAIRS:
        method: Any = "exact"
        label = EXACT if k == n else EXACT_NO_ZEROS
    elif tied and k <= MAX_PERMUTATION_PAIRS:
        # n_resamples=inf: every one of the 2^k sign patterns, i.e. the exact conditional
        # distribution given the mid-ranks.
        method = stats.PermutationMethod(n_resamples=np.inf)
        label = PERMUTATION + ("" if k == n else ", zeros removed")
    else:
        method = "asymptotic"
        label = NORMAL + ("" if k == n else ", zeros removed")
    less = stats.wilcoxon(nonzero, alternative="less", method=method)
    two = stats.wilcoxon(nonzero, alternative="two-sided", method=method)
    if method == "asymptotic":
        z = float(less.zstatistic)
    return SignedRank(
        n=n,
        n_nonzero=k,
        zeros=n - k,
        tied=tied,
        v=float(less.statistic),
        w=float(two.statistic),
        p_less=float(less.pvalue),
        p_two_sided=float(two.pvalue),
        method=label,
        z=z,
    )


@dataclass
class Comparison:
    """A paired comparison of configuration A against B on one metric (lower is better).

    With a `resolution`, both sides are rounded to multiples of it (an error rate's 100/N) and
    the differences are taken in those integer units, so that float noise cannot break ties.
    """

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
    n_nonzero: int = 0
    tied: int = 0
    v: float = math.nan
    w: float = math.nan
    z: float = math.nan
    differences: list[float] = field(default_factory=list)
    resolution: float | None = None

    @property
    def k_of_n(self) -> str:
        return f"{self.a_wins} of {self.n}"

    @property
    def b_wins(self) -> int:
        return self.n - self.a_wins - self.ties

    @property
    def mean_difference(self) -> float:
        """Mean of the paired differences A - B (NaN without pairs)."""
        return float(np.mean(self.differences)) if self.differences else math.nan


def compare(
    a: Mapping[int, float],
    b: Mapping[int, float],
    *,
    group_a: str,
    group_b: str,
    metric: str,
    label: str | None = None,
    resolution: float | None = None,
) -> Comparison:
    """Pair `a` and `b` by seed and test whether A's values are lower than B's.

    A comparison without pairs is returned with NaN p-values and a note that says why.
    """
    pairing = pair_by_seed(a, b)
    finite = np.isfinite(pairing.a) & np.isfinite(pairing.b)
    seeds = [s for s, ok in zip(pairing.seeds, finite, strict=True) if ok]
    xa, xb = pairing.a[finite], pairing.b[finite]
    if resolution:
        # Integer units: equal counts give exactly equal values and exactly zero differences.
        units = np.rint(xa / resolution) - np.rint(xb / resolution)
        xa, xb = np.rint(xa / resolution) * resolution, np.rint(xb / resolution) * resolution
    else:
        units = xa - xb
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
        test = SignedRank(
            0, 0, 0, 0, math.nan, math.nan, math.nan, math.nan, "not computable (no pairs)"
        )
    else:
        test = signed_rank(units)
    min_less, min_two = smallest_exact_p(test.n_nonzero)
    scale = resolution or 1.0
    return Comparison(
        label=label or f"{group_a} vs {group_b}",
        metric=metric,
        group_a=group_a,
        group_b=group_b,
        n=n,
        a_wins=int(np.sum(units < 0)),
        ties=int(np.sum(units == 0)),
        p_less=test.p_less,
        p_two_sided=test.p_two_sided,
        min_p_less=min_less,
        min_p_two_sided=min_two,
        method=test.method,
        mean_a=float(np.mean(xa)) if n else math.nan,
        mean_b=float(np.mean(xb)) if n else math.nan,
        seeds=seeds,
        only_a=pairing.only_a,
        only_b=pairing.only_b,
        note="; ".join(notes),
        n_nonzero=test.n_nonzero,
        tied=test.tied,
        v=test.v,
        w=test.w,
        z=test.z,
        differences=[float(u) * scale for u in units],
        resolution=resolution,
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
