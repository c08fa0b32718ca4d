"""The report's "theory, measured" section, from synthetic runs with known diagnostics."""

from __future__ import annotations

import csv
import math
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from elurepro.analysis.report import analyze
from tests.analysis_fakes import write_any

UNITS = {"elu": 0.05, "lrelu": 0.25, "relu": 0.45, "gelu": 0.35}  # q level per unit
SPEED = {"elu": 0.5, "lrelu": 0.3, "relu": 0.2, "gelu": 0.25}  # how fast the loss falls
EPOCHS, SEEDS = 20, range(6)


def _fake(runs: Path) -> dict:
    data = {}
    for unit, seed in product(UNITS, SEEDS):
        rng = np.random.default_rng(17 * seed + len(unit))
        q = UNITS[unit] + 0.01 * rng.standard_normal(EPOCHS + 1)
        cos = 0.9 - UNITS[unit] + 0.01 * rng.standard_normal(EPOCHS + 1)
        loss = 2.3 * np.exp(-SPEED[unit] * np.arange(EPOCHS + 1)) + 0.01 * rng.random(EPOCHS + 1)
        records = []
        for e in range(EPOCHS + 1):
            r = {"step": 100 * e, "epoch": float(e), "act/median": 0.1, "val/loss": 1.0}
            r |= {"theory/q": float(q[e]), "theory/q/layer2": float(q[e])}
            r |= {"theory/ng_cos": float(cos[e]), "theory/mu_abs_median": 0.5 * float(q[e])}
            if e:
                r["train/loss"] = float(loss[e])
            records.append(r)
        write_any(runs, "new", "mnist_meanact", "mnist", unit, seed, records, budget="short")
        data[(unit, seed)] = (q, cos)
    return data


def _exact_one_sided(d: np.ndarray) -> float:
    """P(V <= observed) under H0, by enumerating every sign pattern (no ties, no zeros here)."""
    ranks = np.argsort(np.argsort(np.abs(d))) + 1
    observed = ranks[d > 0].sum()
    count = sum(
        ranks[np.array(signs, bool)].sum() <= observed for signs in product([0, 1], repeat=len(d))
    )
    return count / 2 ** len(d)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("theory")
    data = _fake(root / "runs")
    result = analyze("mnist_meanact", root / "runs", root / "out", tensorboard=False)
    return data, result, root / "out"


def test_table_holds_early_and_late_values_per_unit(report) -> None:
    data, result, out = report
    assert (out / "theory_diagnostics.png").is_file()
    rows = list(csv.DictReader((out / "theory_diagnostics.csv").open()))
    row = next(r for r in rows if r["configuration"] == "relu" and r["quantity"] == "theory/q")
    early = [np.mean(data[("relu", s)][0][1:3]) for s in SEEDS]  # first tenth of 20 epochs
    late = [data[("relu", s)][0][-1] for s in SEEDS]
    assert float(row["early_mean"]) == pytest.approx(np.mean(early))
    assert float(row["late_mean"]) == pytest.approx(np.mean(late))
    assert float(row["late_std"]) == pytest.approx(np.std(late, ddof=1))
    angle = next(
        r for r in rows if r["configuration"] == "elu" and r["quantity"] == "theory/ng_cos"
    )
    degrees = [np.degrees(np.arccos(data[("elu", s)][1][-1])) for s in SEEDS]
    assert float(angle["late_mean"]) == pytest.approx(np.mean(degrees))


def test_claims_are_answered_with_paired_tests(report) -> None:
    data, result, _ = report
    text = result.report.read_text()
    assert "The theory, measured" in text
    during = {k: np.mean(q[1:]) for k, (q, _) in data.items()}
    d = np.array([during[("elu", s)] - during[("relu", s)] for s in SEEDS])
    p = _exact_one_sided(d)
    assert p == pytest.approx(1 / 64)  # ELU lower on all 6 seeds
    line = next(x for x in text.splitlines() if "smaller than relu" in x and "q = " in x)
    assert "**yes**" in line and "6 of 6" in line and f"{p:.5f}" in line
    # Units ordered by q: elu, lrelu, gelu, relu; by early loss the same: rho = 1.
    order = next(x for x in text.splitlines() if x.startswith("- Does ordering") and "q = " in x)
    assert "elu, lrelu, gelu, relu" in order and "ρ = 1.00" in order
    assert not math.isnan(p)


def test_rank_agreement_is_exact_for_few_units() -> None:
    from itertools import permutations

    from scipy import stats

    from elurepro.analysis.figures.theory_diagnostics import rank_agreement

    a, b = [0.3, 0.1, 0.2, 0.5, 0.4], [2.0, 1.0, 3.0, 5.0, 4.0]
    rho, p, method = rank_agreement(a, b)
    observed = stats.spearmanr(a, b).statistic
    count = sum(stats.spearmanr(a, [b[i] for i in o]).statistic >= observed - 1e-12
                for o in permutations(range(5)))  # fmt: skip
    assert rho == pytest.approx(observed) and p == pytest.approx(count / 120)
    assert "exact" in method
    assert rank_agreement([1, 2, 3], [1, 2, 3])[1] == pytest.approx(1 / 6)  # not "p = 0"
