"""Paired statistics checked against hand enumeration and a published worked example."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from elurepro.analysis.stats import (
    compare,
    describe,
    min_p_note,
    pair_by_seed,
    signed_rank,
    smallest_exact_p,
)


def enumerated_p(d: np.ndarray) -> tuple[float, float]:
    """Exact signed-rank p-values by listing all 2^n sign patterns (|d| distinct, no zeros).

    Returns (P(W+ <= observed), two-sided 2 * min tail), W+ = sum of ranks of positive d.
    """
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    totals = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=len(d))
        ]
    )
    lower = np.mean(totals <= observed)
    upper = np.mean(totals >= observed)
    return float(lower), float(min(1.0, 2 * min(lower, upper)))


@pytest.mark.parametrize("n", [6, 8, 10])
@pytest.mark.parametrize("trial", range(3))
def test_wilcoxon_matches_enumerated_null_distribution(n: int, trial: int) -> None:
    rng = np.random.default_rng(100 * n + trial)
    magnitudes = rng.permutation(np.arange(1, n + 1)) * 0.37 + rng.random(n) * 0.01
    signs = rng.choice([-1.0, 1.0], size=n, p=[0.7, 0.3])
    d = magnitudes * signs
    b = rng.normal(30.0, 1.0, size=n)
    a = b + d
    t = signed_rank(a - b)
    p_less, p_two, method = t.p_less, t.p_two_sided, t.method
    want_less, want_two = enumerated_p(d)
    assert method == "exact"
    assert p_less == pytest.approx(want_less, rel=1e-12)
    assert p_two == pytest.approx(want_two, rel=1e-12)


def test_all_pairs_favour_a_gives_the_smallest_p() -> None:
    b = np.linspace(31.0, 32.0, 10)
    a = b - np.arange(1, 11) * 0.1
    t = signed_rank(a - b)
    p_less, p_two = t.p_less, t.p_two_sided
    assert p_less == pytest.approx(1 / 1024)
    assert p_two == pytest.approx(2 / 1024)
    assert smallest_exact_p(10) == pytest.approx((1 / 1024, 2 / 1024))


def test_published_worked_example_hollander_wolfe() -> None:
    # Hollander & Wolfe (1973), "Nonparametric Statistical Methods", p. 29, Table 3.1:
    # Hamilton depression scale factor IV before (x) and after (y) tranquilizer, 9 patients.
    # The exact one-sided test of x > y gives T+ = 40, p = 0.0195 (also reproduced in R's
    # ?wilcox.test: V = 40, p-value = 0.01953).
    x = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
    y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]
    t = signed_rank(np.subtract(y, x))  # "after lower than before"
    p_less, p_two, method = t.p_less, t.p_two_sided, t.method
    assert method == "exact"
    assert p_less == pytest.approx(0.01953, abs=5e-6)
    assert p_two == pytest.approx(0.03906, abs=5e-6)


def test_pair_by_seed_matches_and_lists_unpaired() -> None:
    pairing = pair_by_seed({0: 1.0, 1: 2.0, 2: 3.0}, {3: 7.0, 2: 6.0, 1: 5.0})
    assert pairing.seeds == [1, 2]
    assert pairing.a.tolist() == [2.0, 3.0]
    assert pairing.b.tolist() == [5.0, 6.0]
    assert pairing.only_a == [0]
    assert pairing.only_b == [3]


def test_compare_counts_wins_and_reports_unpaired_seeds() -> None:
    a = {s: 10.0 + s for s in range(8)}
    b = {s: 10.0 + s + (0.5 + 0.1 * s if s != 5 else -0.3) for s in range(9) if s != 2}
    c = compare(a, b, group_a="elu", group_b="relu", metric="test/error")
    assert c.n == 7
    assert c.seeds == [0, 1, 3, 4, 5, 6, 7]
    assert c.k_of_n == "6 of 7"
    assert "elu seed(s) [2]" in c.note and "relu seed(s) [8]" in c.note
    d = np.array([a[s] - b[s] for s in c.seeds])
    assert (c.p_less, c.p_two_sided) == pytest.approx(enumerated_p(d))
    assert c.min_p_less == pytest.approx(2.0**-7)


def test_compare_without_pairs_says_so() -> None:
    c = compare({0: 1.0}, {1: 2.0}, group_a="elu", group_b="relu+bn", metric="test/error")
    assert c.n == 0
    assert math.isnan(c.p_less) and math.isnan(c.p_two_sided)
    assert "no pairs" in c.note
    empty = compare({}, {}, group_a="elu", group_b="srelu", metric="train/loss")
    assert empty.n == 0 and "no pairs" in empty.note


def test_compare_all_ties_is_not_computable() -> None:
    c = compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}, group_a="a", group_b="b", metric="m")
    assert c.n == 2 and c.ties == 2 and math.isnan(c.p_less)
    assert "not computable" in c.method


def test_ties_use_the_permutation_method() -> None:
    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    b = [2.0, 3.0, 4.0, 5.5, 6.5, 5.0]  # |d| = 1, 1, 1, 1.5, 1.5, 1: ties
    t = signed_rank(np.subtract(a, b))
    p_less, method = t.p_less, t.method
    assert "permutation" in method
    # Independent check: enumerate sign flips of d with average ranks.
    d = np.array(a) - np.array(b)
    ranks = np.array([2.5, 2.5, 2.5, 5.5, 5.5, 2.5])
    observed = ranks[d > 0].sum()
    totals = [
        sum(r for r, s in zip(ranks, signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=6)
    ]
    assert p_less == pytest.approx(np.mean(np.array(totals) <= observed + 1e-9))


def test_describe_uses_sample_std_and_skips_non_finite() -> None:
    values = [28.5, 28.9, 28.7, float("nan"), None]
    d = describe(values)
    assert d.n == 3
    assert d.mean == pytest.approx((28.5 + 28.9 + 28.7) / 3)
    assert d.std == pytest.approx(math.sqrt(((-0.2) ** 2 + 0.2**2 + 0) / 2))
    assert d.text(2) == "28.70 ± 0.20 (n=3)"
    assert describe([]).text() == "—"


def test_min_p_note_is_computed_from_n() -> None:
    note = min_p_note(10)
    assert "0.00098" in note and "0.00195" in note
    assert "reachable one-sided and not reachable two-sided" in note
    assert "0.00391" in min_p_note(9)  # 2 / 512
    assert "not reachable one-sided" in min_p_note(9)


def enumerated_with_zeros_and_ties(d: list[float]) -> tuple[float, float, float]:
    """(P(W+ <= observed), two-sided p, observed W+): zeros dropped, mid-ranks, all 2^n signs."""
    d = [x for x in d if x != 0]
    mags = sorted(abs(x) for x in d)
    ranks = [np.mean([i + 1 for i, m in enumerate(mags) if m == abs(x)]) for x in d]
    observed = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
    totals = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=len(d))
        ]
    )
    lower = float(np.mean(totals <= observed + 1e-9))
    upper = float(np.mean(totals >= observed - 1e-9))
    return lower, min(1.0, 2 * min(lower, upper)), float(observed)


@pytest.mark.parametrize(
    ("d", "method"),
    [
        ([3.0, -1.0, 4.0, 1.5, -5.0, 9.0, 2.5], "exact"),
        ([3.0, 0.0, 4.0, 1.5, -5.0, 9.0, 0.0, 2.5], "exact with zeros removed"),
        (
            [2.0, -2.0, 4.0, 2.0, -5.0, 9.0, 4.0],
            "exact permutation (mid-ranks for tied magnitudes)",
        ),
        (
            [2.0, 0.0, 4.0, 2.0, -5.0, -2.0, 4.0, 7.0],
            "exact permutation (mid-ranks for tied magnitudes), zeros removed",
        ),
    ],
)
def test_signed_rank_method_and_values_match_enumeration(d: list[float], method: str) -> None:
    test = signed_rank(d)
    p_less, p_two, v = enumerated_with_zeros_and_ties(d)
    nonzero = [x for x in d if x != 0]
    assert test.method == method
    assert (test.n, test.n_nonzero, test.zeros) == (len(d), len(nonzero), d.count(0.0))
    assert test.p_less == pytest.approx(p_less, rel=1e-12)
    assert test.p_two_sided == pytest.approx(p_two, rel=1e-12)
    assert test.v == pytest.approx(v)
    total = len(nonzero) * (len(nonzero) + 1) / 2
    assert test.w == pytest.approx(min(v, total - v))


def test_signed_rank_normal_approximation_beyond_the_exact_range() -> None:
    rng = np.random.default_rng(3)
    d = (np.arange(1, 61) + rng.random(60) * 0.1) * rng.choice([-1.0, 1.0], 60, p=[0.6, 0.4])
    test = signed_rank(d)
    assert test.method == "normal approximation (tie-corrected)"
    # Independent: W+ ~ N(n(n+1)/4, n(n+1)(2n+1)/24) without ties, no continuity correction.
    n = 60
    v = sum(r for r, x in zip(np.argsort(np.argsort(np.abs(d))) + 1, d, strict=True) if x > 0)
    z = (v - n * (n + 1) / 4) / math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
    assert test.v == pytest.approx(v)
    assert test.z == pytest.approx(z)
    assert test.p_less == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))))
    tied = signed_rank(np.repeat([1.0, -2.0, 3.0, 4.0, -5.0, 6.0], 3))  # 18 pairs, tied
    assert tied.method == "normal approximation (tie-corrected)"


def test_only_zero_differences_are_not_computable() -> None:
    test = signed_rank([0.0, 0.0, 0.0])
    assert test.method == "not computable (no non-zero differences)" and test.zeros == 3
    assert math.isnan(test.p_less) and math.isnan(test.v)


def test_compare_on_the_count_grid_keeps_ties_that_float_noise_breaks() -> None:
    # Error rates (%) of 10,000 images, logged in float32: the differences 28.81 - 28.71 and
    # 31.13 - 31.03 are both 10 images, but not equal as floats.
    n = 10_000
    b_counts = [2871, 3103, 2950, 2990, 2805]
    a_counts = [2881, 3113, 2950, 2980, 2830]
    a = {s: float(np.float32(c * 100 / n)) for s, c in enumerate(a_counts)}
    b = {s: float(np.float32(c * 100 / n)) for s, c in enumerate(b_counts)}
    assert len({abs(a[s] - b[s]) for s in (0, 1, 3)}) > 1  # float noise breaks the tie
    noisy = compare(a, b, group_a="gelu", group_b="elu", metric="test/error")
    exact = compare(a, b, group_a="gelu", group_b="elu", metric="test/error", resolution=100 / n)
    assert exact.ties == 1 and exact.tied == 3
    assert noisy.tied < exact.tied  # what rounding to counts prevents
    assert exact.method == "exact permutation (mid-ranks for tied magnitudes), zeros removed"
    d = [x - y for x, y in zip(a_counts, b_counts, strict=True)]
    p_less, p_two, v = enumerated_with_zeros_and_ties(d)
    assert (exact.p_less, exact.p_two_sided, exact.v) == pytest.approx((p_less, p_two, v))
    assert exact.differences == pytest.approx([x / 100 for x in d], abs=1e-12)
    assert exact.min_p_less == pytest.approx(0.5**4)  # four non-zero pairs
    assert (exact.a_wins, exact.ties, exact.b_wins) == (1, 1, 3)
