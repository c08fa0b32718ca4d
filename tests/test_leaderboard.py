"""The leaderboard: units × experiments, cells never merged across budgets or data."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from elurepro.analysis.leaderboard import build_leaderboard
from elurepro.leaderboard import main
from tests.analysis_fakes import EVAL_IMAGES, fake_units
from tests.test_analysis_labels import _meanact_other_mnist
from tests.test_analysis_reports import assert_figures_decode
from tests.test_analysis_units import COUNT_DIFFS, counts, enumerate_signed_rank, write_runs

REPO = Path(__file__).resolve().parents[1]
SMOKE_ERRORS = {"elu": [61.0, 62.5, 60.0], "gelu": [60.5, 63.0, 59.0]}


def _runs(root: Path) -> Path:
    runs = root / "runs"
    write_runs(runs, budget="short")  # cifar100_11layer: elu, gelu, mish, lrelu_alpha0.3, ± BN
    # The same configurations at another budget, with other numbers (and no mish).
    smoke = {
        (unit, False, seed): {"test/error": value, "train/loss": 2.0}
        for unit, values in SMOKE_ERRORS.items()
        for seed, value in enumerate(values)
    }
    fake_units(runs, "cifar100_11layer", "cifar100", smoke, budget="smoke")
    _meanact_other_mnist(runs)
    return runs


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    runs = _runs(root)
    out = root / "out"
    assert main([str(runs), "--out", str(out)]) == 0
    with (out / "leaderboard.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows, (out / "leaderboard.md").read_text()


def _cell(rows, experiment, budget, metric, unit, bn=False) -> dict:
    (row,) = [
        r
        for r in rows
        if (r["experiment"], r["budget"], r["metric"], r["unit"], r["batchnorm"])
        == (experiment, budget, metric, unit, str(bn))
    ]
    return row


@pytest.mark.parametrize("unit", list(COUNT_DIFFS))
@pytest.mark.parametrize("bn", [False, True])
def test_cells_hold_the_paired_test_against_elu(board, unit: str, bn: bool) -> None:
    _, rows, _ = board
    cell = _cell(rows, "cifar100_11layer", "short", "final test error (%)", unit, bn)
    want = enumerate_signed_rank(COUNT_DIFFS[unit])
    values = [c * 100 / EVAL_IMAGES for c in counts(unit, bn)]
    assert int(cell["n"]) == 8
    assert float(cell["mean"]) == pytest.approx(np.mean(values), abs=1e-5)
    assert float(cell["std"]) == pytest.approx(np.std(values, ddof=1), abs=1e-5)
    assert cell["baseline"] == "elu" and cell["pairs"] == "8"
    assert int(cell["unit_better"]) == sum(d < 0 for d in COUNT_DIFFS[unit])
    assert int(cell["ties"]) == COUNT_DIFFS[unit].count(0)
    assert float(cell["p_one_sided_less"]) == pytest.approx(want["p_less"], rel=1e-9)
    assert float(cell["p_two_sided"]) == pytest.approx(want["p_two"], rel=1e-9)
    assert float(cell["v"]) == pytest.approx(want["v"])
    assert float(cell["mean_difference"]) == pytest.approx(np.mean(COUNT_DIFFS[unit]) / 100)
    assert cell["comparable_with_paper"] == "False" and "short" in cell["not_comparable_because"]


def test_two_budgets_are_two_lines_never_merged(board) -> None:
    _, rows, text = board
    smoke = _cell(rows, "cifar100_11layer", "smoke", "final test error (%)", "gelu")
    assert int(smoke["n"]) == 3
    assert float(smoke["mean"]) == pytest.approx(np.mean(SMOKE_ERRORS["gelu"]))
    d = [g - e for g, e in zip(SMOKE_ERRORS["gelu"], SMOKE_ERRORS["elu"], strict=True)]
    want = enumerate_signed_rank([round(x / 1e-4) for x in d])
    assert float(smoke["p_one_sided_less"]) == pytest.approx(want["p_less"])
    assert (
        smoke["sweep"]
        != _cell(rows, "cifar100_11layer", "short", "final test error (%)", "gelu")["sweep"]
    )
    missing = _cell(rows, "cifar100_11layer", "smoke", "final test error (%)", "mish")
    assert missing["note"] == "not run" and missing["n"] == "0"
    header = next(line for line in text.splitlines() if line.startswith("| experiment: metric"))
    mish = [c.strip() for c in header.strip("|").split(" | ")].index("mish")
    lines = [
        [c.strip() for c in line.strip("|").split(" | ")]
        for line in text.splitlines()
        if line.startswith("| cifar100_11layer: final test")
    ]
    assert len(lines) == 2
    by_budget = {("smoke" if "smoke" in cells[2] else "short"): cells for cells in lines}
    assert by_budget["smoke"][mish] == "not run"
    mean = np.mean([c / 100 for c in counts("mish", False)])
    assert by_budget["short"][mish].startswith(f"{mean:.2f} ± ")


def test_every_unit_of_every_experiment_and_not_run(board) -> None:
    out, rows, text = board
    header = next(line for line in text.splitlines() if line.startswith("| experiment: metric"))
    for unit in ("elu", "gelu", "mish", "lrelu_alpha0.3", "relu", "elu+bn", "gelu+bn"):
        assert f"| {unit} |" in header or header.endswith(f"| {unit} |")
    for experiment in ("mnist_autoencoder", "cifar_18layer", "imagenet_15layer_spp"):
        assert all(r["note"] == "not run" for r in rows if r["experiment"] == experiment)
        line = next(x for x in text.splitlines() if x.startswith(f"| {experiment}:"))
        assert line.count("not run") == len(header.split("|")) - 2 - 4
    meanact = _cell(
        rows, "mnist_meanact", "paper", "|median activation|, mean over training epochs", "relu"
    )
    assert meanact["comparable_with_paper"] == "False"
    assert "MNIST files with other checksums" in meanact["not_comparable_because"]
    assert "NOT comparable" in text
    assert_figures_decode([out / "leaderboard.png", out / "leaderboard.pdf"])


def test_figure_has_a_panel_per_line_with_a_point_per_unit(tmp_path: Path) -> None:
    from elurepro.analysis.leaderboard import figure

    runs = _runs(tmp_path)
    board = build_leaderboard(runs)
    fig = figure(board)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    lines = [line for line in board.lines if any(c.comparison for c in line.cells.values())]
    assert len(visible) == len(lines)
    titles = {ax: ax.get_title(loc="left").replace("\n", " ") for ax in visible}
    short = next(ax for ax, t in titles.items() if "final test error" in t and "budget=short" in t)
    ticks = [t.get_text() for t in short.get_xticklabels()]
    assert ticks == ["gelu", "lrelu_alpha0.3", "mish", "gelu+bn", "lrelu_alpha0.3+bn", "mish+bn"]


def test_cli_errors_and_help(tmp_path: Path, capsys, monkeypatch) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope" in err[0]
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 0
    assert "not run: cifar100_11layer" in capsys.readouterr().out
    # Without --out: into the runs folder, never into the working folder's results/.
    monkeypatch.chdir(tmp_path)
    assert main(["empty"]) == 0
    assert (tmp_path / "empty" / "leaderboard" / "leaderboard.md").is_file()
    assert not (tmp_path / "results").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "elurepro.leaderboard", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0 and "--baseline" in proc.stdout


def test_the_board_names_its_runs_relative_to_the_repository(board) -> None:
    """A path of the machine the board was made on means nothing in a committed file."""
    out, _, md = board
    runs = out.parent / "runs"
    assert f"`{runs}" not in md
    folders = len(list(runs.rglob("member.json")))
    relative = Path(os.path.relpath(runs, REPO)).as_posix()
    assert f"Runs read: {folders} member folder(s) in 3 sweep(s) under `{relative}`" in md
