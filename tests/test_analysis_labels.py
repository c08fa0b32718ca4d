"""Non-official data and reduced budgets are labelled alike in every experiment's report: the
top says the numbers are not comparable with the paper's and why, claims are answered only
under that statement, and no caption says "reproduction"."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from elurepro.analysis.report import analyze
from tests.analysis_fakes import (
    fake_autoencoder,
    fake_cifar11,
    fake_cifar18,
    fake_imagenet,
    fake_meanact,
    fake_units,
)

MNIST_COPY = "MNIST files with other checksums (re-downloaded from a mirror)"


def _meanact_other_mnist(runs: Path) -> None:
    values = {
        (unit, False, seed): {
            "act/median": offset + 0.01 * seed,
            "train/loss": 0.2 + offset + 0.001 * seed,
            "val/error": 2.0 + offset,
        }
        for unit, offset in (("elu", 0.05), ("relu", 0.4), ("gelu", 0.2), ("mish", 0.1))
        for seed in range(4)
    }
    fake_units(
        runs,
        "mnist_meanact",
        "mnist",
        values,
        budget="paper",
        official=False,
        description=MNIST_COPY,
    )


CASES: dict[str, tuple[str, Callable[[Path], object], tuple[str, ...]]] = {
    # experiment, writer of its runs, phrases the top statement must hold
    "meanact-other-mnist": (
        "mnist_meanact",
        _meanact_other_mnist,
        ("made on non-official data", MNIST_COPY),
    ),
    "meanact-reduced": (
        "mnist_meanact",
        lambda runs: fake_meanact(runs, seeds=range(2), epochs=3, layout="new", budget="demo"),
        ("reduced budget", "demo: 1/100"),
    ),
    "autoencoder-other-mnist": (
        "mnist_autoencoder",
        lambda runs: fake_autoencoder(runs, epochs=3, layout="new", budget="paper", official=False),
        ("MNIST (not the official data)", "checksums are not the official"),
    ),
    "cifar11-lossy-short": (
        "cifar100_11layer",
        lambda runs: fake_cifar11(
            runs,
            seeds=range(2),
            steps=2000,
            dataset="cifar10",
            official=False,
            budget="short",
            batchnorm=False,
            layout="new",
        ),
        ("lossy CIFAR-10 copy", "short: 1/10", "these runs used CIFAR-10"),
    ),
    "cifar18-smoke": (
        "cifar_18layer",
        lambda runs: fake_cifar18(runs, steps=2000, layout="new", budget="smoke"),
        ("smoke: a few steps",),
    ),
    "imagenet-other": (
        "imagenet_15layer_spp",
        lambda runs: fake_imagenet(runs, steps=40_000, layout="new", official=False),
        ("ImageNet (not the official data)",),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_not_comparable_reports_say_so_at_the_top(tmp_path: Path, case: str) -> None:
    experiment, write, phrases = CASES[case]
    write(tmp_path / "runs")
    result = analyze(experiment, tmp_path / "runs", tmp_path / "out", tensorboard=False)
    text = result.report.read_text()
    top = text.split("\n## ")[0]  # everything before the first section
    assert "NOT COMPARABLE WITH THE PAPER'S NUMBERS" in top
    for phrase in phrases:
        assert phrase.lower() in top.lower(), phrase
    assert "reproduction" not in text.lower()
    captions = re.findall(r"^\*(.+)\* \(PDF", text, flags=re.M)
    assert captions and all("NOT comparable with the paper" in c for c in captions)
    # Every answer to the paper's claims comes after the statement, under a caveat.
    for section in text.split("\n## ")[1:]:
        if section.startswith("Checks of the paper's claims"):
            first = section.split("\n\n")[1]
            assert first.startswith("Answered for these runs only"), first
    assert result.not_comparable is not None


def test_meanact_claims_of_unknown_units_under_the_statement(tmp_path: Path) -> None:
    _meanact_other_mnist(tmp_path / "runs")
    result = analyze("mnist_meanact", tmp_path / "runs", tmp_path / "out", tensorboard=False)
    text = result.report.read_text()
    claims = text.split("## Checks of the paper's claims")[1].split("\n## ")[0]
    assert "Answered for these runs only" in claims
    assert "**yes** — elu" in claims  # ELU's |median| (0.05…0.08) is the smallest
    for unit in ("gelu", "mish"):
        assert unit in claims
    import csv

    with (tmp_path / "out" / "comparisons.csv").open() as fh:
        rows = {(r["comparison"], r["metric"]): r for r in csv.DictReader(fh)}
    gelu = rows[("gelu vs elu", "act/median")]
    # |act/median| of gelu (0.2 + 0.01 s) is above ELU's (0.05 + 0.01 s) on all 4 seeds.
    assert gelu["b_better"] == "4" and float(gelu["p_one_sided_less"]) == pytest.approx(1.0)
    assert float(gelu["p_two_sided"]) == pytest.approx(2 / 16)
    assert float(gelu["mean_difference"]) == pytest.approx(0.15)
    loss = rows[("mish vs elu", "train/loss")]
    assert float(loss["mean_difference"]) == pytest.approx(0.05)


def test_paper_budget_on_official_data_is_a_reproduction(tmp_path: Path) -> None:
    fake_cifar11(tmp_path / "runs", seeds=range(3), steps=2000, layout="new", batchnorm=False)
    result = analyze("cifar100_11layer", tmp_path / "runs", tmp_path / "out", tensorboard=False)
    text = result.report.read_text()
    top = text.split("\n## ")[0]
    assert "**Comparable with the paper:**" in top and "NOT COMPARABLE" not in text
    assert "*Fig. 4 reproduction (CIFAR-100, budget=paper)*" in text
    assert result.not_comparable is None
    assert np.isfinite(1.0)
