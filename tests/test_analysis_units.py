"""Units the analysis has never heard of (gelu, mish, lrelu with alpha 0.3) beside ELU get every
comparison and every figure curve, with p-values checked against an independent enumeration of
the signed-rank null distribution (all 2^n sign patterns of the mid-ranks)."""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_hex

from elurepro.analysis.plotting import color_for
from elurepro.analysis.report import analyze
from tests.analysis_fakes import EVAL_IMAGES, fake_units
from tests.test_analysis_reports import assert_figures_decode

SEEDS = range(8)
# Test errors as counts of the 10,000 test images: ELU's, and each unit's difference from it.
ELU_COUNTS = [2871, 3103, 2950, 2990, 2805, 2932, 3011, 2888]
COUNT_DIFFS = {
    # a zero difference and tied |differences| (10 four times, 25 twice)
    "gelu": [10, 10, 0, -10, 25, 10, -25, 40],
    # no zero, no tie
    "mish": [3, 7, -2, 11, 5, 13, 17, 19],
    # one zero, no tie among the rest
    "lrelu_alpha0.3": [31, 0, 12, 45, -6, 22, 27, 50],
}
LOSS_DIFFS = {
    "gelu": [0.004, -0.002, 0.003, 0.001, 0.006, -0.005, 0.007, 0.008],
    "mish": [-0.001, -0.003, -0.0025, 0.004, -0.006, -0.005, -0.007, 0.002],
    "lrelu_alpha0.3": [0.01, 0.02, 0.03, -0.04, 0.05, 0.06, 0.07, 0.08],
}
BN_SHIFT = 15  # every unit with BN: 15 images more than without (all |d| tied)
EXPECTED_METHOD = {
    "gelu": "exact permutation (mid-ranks for tied magnitudes), zeros removed",
    "mish": "exact",
    "lrelu_alpha0.3": "exact with zeros removed",
}
UNITS = ["elu", *COUNT_DIFFS]


def counts(unit: str, bn: bool) -> list[int]:
    base = [c + (BN_SHIFT if bn else 0) for c in ELU_COUNTS]
    if unit == "elu":
        return base
    return [c + d for c, d in zip(base, COUNT_DIFFS[unit], strict=True)]


def losses(unit: str, bn: bool) -> list[float]:
    base = [0.5 + 0.01 * s + (0.02 if bn else 0.0) for s in SEEDS]
    if unit == "elu":
        return base
    return [b + d for b, d in zip(base, LOSS_DIFFS[unit], strict=True)]


def enumerate_signed_rank(d: list[float]) -> dict:
    """The exact signed-rank test by brute force: zeros dropped, mid-ranks for tied |d|, every
    one of the 2^n sign patterns equally likely. Independent of scipy."""
    d = [x for x in d if x != 0]
    n = len(d)
    magnitudes = sorted(abs(x) for x in d)
    ranks = []
    for x in d:
        positions = [i + 1 for i, m in enumerate(magnitudes) if m == abs(x)]
        ranks.append(sum(positions) / len(positions))
    observed = sum(r for r, x in zip(ranks, d, strict=True) if x > 0)
    totals = np.array(
        [
            sum(r for r, s in zip(ranks, signs, strict=True) if s)
            for signs in itertools.product((0, 1), repeat=n)
        ]
    )
    lower = float(np.mean(totals <= observed + 1e-9))
    upper = float(np.mean(totals >= observed - 1e-9))
    return {
        "n_nonzero": n,
        "v": observed,
        "w": min(observed, n * (n + 1) / 2 - observed),
        "p_less": lower,
        "p_two": min(1.0, 2 * min(lower, upper)),
        "tied": sum(magnitudes.count(abs(x)) > 1 for x in d),
    }


def write_runs(runs: Path, budget: str = "short") -> None:
    values = {}
    for unit in UNITS:
        for bn in (False, True):
            for seed, count, loss in zip(SEEDS, counts(unit, bn), losses(unit, bn), strict=True):
                values[(unit, bn, seed)] = {
                    "test/error": count * 100 / EVAL_IMAGES,
                    "train/loss": loss,
                }
    fake_units(runs, "cifar100_11layer", "cifar100", values, budget=budget)


@pytest.fixture(scope="module")
def units_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("units")
    write_runs(root / "runs")
    result = analyze("cifar100_11layer", root / "runs", root / "out", tensorboard=False)
    return result, root / "out"


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def markdown_rows(text: str, first_header: str) -> list[dict]:
    """The rows of the Markdown table whose first header is `first_header`, as dicts."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    headers = [h.strip() for h in lines[start].strip("|").split(" | ")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(headers, [c.strip() for c in line.strip("|").split(" | ")])))
    return rows


def test_float32_logging_would_break_the_ties(units_report) -> None:
    """The trap the integer counts avoid: float32-logged errors differ by noise."""
    logged = [
        float(np.float32(c * 100 / EVAL_IMAGES)) - float(np.float32(b * 100 / EVAL_IMAGES))
        for c, b in zip(counts("gelu", False), counts("elu", False), strict=True)
    ]
    tens = {abs(x) for x, d in zip(logged, COUNT_DIFFS["gelu"], strict=True) if abs(d) == 10}
    assert len(tens) > 1


@pytest.mark.parametrize("unit", list(COUNT_DIFFS))
@pytest.mark.parametrize("bn", [False, True])
def test_every_unit_against_elu_on_test_error(units_report, unit: str, bn: bool) -> None:
    _, out = units_report
    rows = {(r["comparison"], r["metric"]): r for r in read_csv(out / "comparisons.csv")}
    suffix = "+bn" if bn else ""
    row = rows[(f"{unit}{suffix} vs elu{suffix}", "test/error")]
    want = enumerate_signed_rank(COUNT_DIFFS[unit])
    assert row["kind"] == "vs baseline"
    assert int(row["n"]) == 8
    assert int(row["n_nonzero"]) == want["n_nonzero"]
    assert int(row["ties"]) == COUNT_DIFFS[unit].count(0)
    assert int(row["a_better"]) == sum(d < 0 for d in COUNT_DIFFS[unit])
    assert int(row["b_better"]) == sum(d > 0 for d in COUNT_DIFFS[unit])
    assert float(row["p_one_sided_less"]) == pytest.approx(want["p_less"], rel=1e-9)
    assert float(row["p_two_sided"]) == pytest.approx(want["p_two"], rel=1e-9)
    assert float(row["v"]) == pytest.approx(want["v"])
    assert float(row["w"]) == pytest.approx(want["w"])
    assert int(row["tied_abs_differences"]) == want["tied"]
    assert row["method"] == EXPECTED_METHOD[unit]
    assert float(row["smallest_p_one_sided"]) == pytest.approx(0.5 ** want["n_nonzero"])
    assert float(row["smallest_p_two_sided"]) == pytest.approx(2 * 0.5 ** want["n_nonzero"])
    assert float(row["mean_difference"]) == pytest.approx(np.mean(COUNT_DIFFS[unit]) / 100)
    differences = [float(x) for x in row["differences"].split()]
    assert differences == pytest.approx([d / 100 for d in COUNT_DIFFS[unit]], abs=1e-12)
    assert "counts of 10,000 test images" in row["resolution"]


@pytest.mark.parametrize("unit", list(COUNT_DIFFS))
def test_every_unit_against_elu_on_training_loss(units_report, unit: str) -> None:
    _, out = units_report
    rows = {(r["comparison"], r["metric"]): r for r in read_csv(out / "comparisons.csv")}
    row = rows[(f"{unit} vs elu", "train/loss")]
    d = [a - b for a, b in zip(losses(unit, False), losses("elu", False), strict=True)]
    want = enumerate_signed_rank(d)
    assert float(row["p_one_sided_less"]) == pytest.approx(want["p_less"], rel=1e-9)
    assert float(row["p_two_sided"]) == pytest.approx(want["p_two"], rel=1e-9)
    assert float(row["v"]) == pytest.approx(want["v"])
    assert row["method"] == "exact" and row["resolution"] == "as logged"


@pytest.mark.parametrize("unit", UNITS)
def test_every_unit_with_bn_against_itself_without(units_report, unit: str) -> None:
    _, out = units_report
    rows = {(r["comparison"], r["metric"]): r for r in read_csv(out / "comparisons.csv")}
    row = rows[(f"{unit}+bn vs {unit}", "test/error")]
    want = enumerate_signed_rank([BN_SHIFT] * 8)
    assert row["kind"] == "BN vs no BN"
    assert (row["a_better"], row["b_better"], row["ties"]) == ("0", "8", "0")
    assert float(row["p_one_sided_less"]) == pytest.approx(want["p_less"]) == 1.0
    assert float(row["p_two_sided"]) == pytest.approx(want["p_two"]) == pytest.approx(2 / 256)
    assert row["method"] == "exact permutation (mid-ranks for tied magnitudes)"


def test_comparison_count_and_markdown_shows_ties_and_method(units_report) -> None:
    result, out = units_report
    rows = read_csv(out / "comparisons.csv")
    # 3 units x (no BN, BN) x 2 metrics against ELU, 4 units x 2 metrics BN against no BN.
    assert len(rows) == 3 * 2 * 2 + 4 * 2
    text = result.report.read_text()
    table = markdown_rows(text, "comparison (A vs B)")
    by_label = {(r["comparison (A vs B)"], r["metric"]): r for r in table}
    for unit, method in EXPECTED_METHOD.items():
        row = by_label[(f"{unit} vs elu", "final test error (%)")]
        assert row["method (scipy)"] == method
        assert row["ties (A = B)"] == str(COUNT_DIFFS[unit].count(0))
        want = enumerate_signed_rank(COUNT_DIFFS[unit])
        assert row["V (W+)"] == f"{want['v']:g}"
        assert row["non-zero pairs"] == str(want["n_nonzero"])


def test_figures_have_a_curve_and_a_colour_for_every_unit(units_report) -> None:
    result, _ = units_report
    assert_figures_decode(result.figures)
    fig4 = result.figure_objects["fig4_learning_curves"]
    ax = fig4.axes[0]
    labels = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    assert set(labels) == set(UNITS)
    for unit, line in labels.items():
        assert to_hex(line.get_color()) == color_for(unit)
    assert len({color_for(u) for u in UNITS}) == len(UNITS)
    fig5 = result.figure_objects["fig5_batchnorm"]
    visible = [ax for ax in fig5.axes if ax.get_visible()]
    assert len(visible) == 2 * len(COUNT_DIFFS)  # a column per non-baseline unit, two rows
    titles = " ".join(ax.get_title(loc="left") for ax in visible)
    for name in ("GELU", "MISH", "LReLU_alpha0.3"):
        assert f"ELU vs {name}" in titles
    first_column = {line.get_label().split(" (")[0] for line in visible[0].get_lines()}
    assert first_column == {"elu", "elu+bn", "gelu", "gelu+bn"}
    diffs = result.figure_objects["paired_differences"]
    ticks = [t.get_text() for t in diffs.axes[0].get_xticklabels()]
    assert ticks == [f"{u}{bn}" for bn in ("", "+bn") for u in sorted(COUNT_DIFFS)]


def test_table_of_finals_lists_every_unit(units_report) -> None:
    _, out = units_report
    rows = {r["configuration"]: r for r in read_csv(out / "final_values.csv")}
    for unit in UNITS:
        for bn in (False, True):
            row = rows[unit + ("+bn" if bn else "")]
            want = [c / 100 for c in counts(unit, bn)]
            assert float(row["test_error_mean"]) == pytest.approx(np.mean(want), abs=1e-5)
            assert float(row["test_error_std"]) == pytest.approx(np.std(want, ddof=1), abs=1e-5)
            assert row["paper_test_error"] == ("28.75" if unit == "elu" and not bn else "")


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_another_baseline(tmp_path: Path) -> None:
    write_runs(tmp_path / "runs")
    result = analyze(
        "cifar100_11layer", tmp_path / "runs", tmp_path / "out", tensorboard=False, baseline="mish"
    )
    rows = {(r["comparison"], r["metric"]): r for r in read_csv(tmp_path / "out/comparisons.csv")}
    row = rows[("gelu vs mish", "test/error")]
    d = [g - m for g, m in zip(counts("gelu", False), counts("mish", False), strict=True)]
    want = enumerate_signed_rank(d)
    assert float(row["p_one_sided_less"]) == pytest.approx(want["p_less"], rel=1e-9)
    assert ("elu vs mish", "test/error") in rows
    assert "against the baseline (mish)" in result.report.read_text()
    assert not math.isnan(float(row["v"]))
