"""Reports never mix budgets, data or configurations: one report per sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from elurepro.analysis.collect import collect_members
from elurepro.analysis.report import analyze, analyze_all
from elurepro.analysis.sweeps import partition
from elurepro.analyze import main
from elurepro.errors import ElureproError
from tests.analysis_fakes import (
    fake_cifar18,
    fake_meanact,
    fake_units,
)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _finals(unit: str, seed: int, value: float) -> dict:
    return {"test/error": value, "train/loss": 1.0 + value / 100}


def _smoke_and_paper(runs: Path) -> None:
    """The same groups and seeds at two budgets: smoke finished (error 50 %), paper with
    elu-s0 unfinished (its folder exists, no summary) and the rest finished (error 30 %)."""
    smoke = {
        (u, False, s): _finals(u, s, 50.0 + s + (u == "relu"))
        for u in ("elu", "relu")
        for s in range(3)
    }
    paper = {
        (u, False, s): _finals(u, s, 30.0 + s + (u == "relu"))
        for u in ("elu", "relu")
        for s in range(3)
    }
    fake_units(runs, "cifar100_11layer", "cifar100", smoke, budget="smoke")
    fake_units(
        runs,
        "cifar100_11layer",
        "cifar100",
        paper,
        budget="paper",
        status={("elu", False, 0): None},
    )


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
@pytest.mark.parametrize("level", ["experiment", "budget"])
def test_unfinished_paper_member_is_never_replaced_by_a_finished_smoke_member(
    tmp_path: Path, level: str, capsys
) -> None:
    runs = tmp_path / "runs"
    _smoke_and_paper(runs)
    folder = runs / "cifar100_11layer"
    if level == "budget":
        # Both budgets' folders moved under one folder: still two sweeps.
        mixed = tmp_path / "mixed"
        mixed.mkdir()
        for sub in folder.iterdir():
            sub.rename(mixed / sub.name)
        folder = mixed
    out = tmp_path / "out"
    assert main(["cifar100_11layer", str(folder), "--out", str(out), "--no-tensorboard"]) == 0
    printed = capsys.readouterr().out.splitlines()
    reports = [line for line in printed if line.startswith("report: ")]
    # One line per report, each saying which sweep and whether it is comparable.
    assert len(reports) == 2
    smoke_line = next(line for line in reports if "budget=smoke" in line)
    paper_line = next(line for line in reports if "budget=paper" in line)
    assert "NOT comparable" in smoke_line and "NOT comparable" not in paper_line
    assert any(line.startswith("note: [") and "unfinished: elu-s0" in line for line in printed)
    paper = Path(paper_line.split()[1]).parent
    smoke = Path(smoke_line.split()[1]).parent
    assert paper != smoke and paper.parent == smoke.parent == out
    paper_rows = {r["configuration"]: r for r in read_csv(paper / "final_values.csv")}
    # ELU at paper: seeds 1 and 2 only (31 %, 32 %), never the smoke member's 50 %.
    assert paper_rows["elu"]["n"] == "2"
    assert float(paper_rows["elu"]["test_error_mean"]) == pytest.approx(31.5)
    status = {r["configuration"]: r for r in read_csv(paper / "status.csv")}
    assert (status["elu"]["finished"], status["elu"]["unfinished"]) == ("2", "1")
    assert "unfinished: elu-s0" in (paper / "report.md").read_text()
    smoke_rows = {r["configuration"]: r for r in read_csv(smoke / "final_values.csv")}
    assert smoke_rows["elu"]["n"] == "3"
    assert float(smoke_rows["elu"]["test_error_mean"]) == pytest.approx(51.0)
    comparisons = read_csv(paper / "comparisons.csv")
    relu = next(r for r in comparisons if r["comparison"] == "relu vs elu")
    assert relu["n"] == "2" and relu["seeds"] == "1 2"
    index = (out / "index.md").read_text()
    assert paper.name in index and smoke.name in index
    assert "NOT COMPARABLE" in (smoke / "report.md").read_text()


def test_analyze_refuses_to_pick_one_of_several_sweeps(tmp_path: Path) -> None:
    _smoke_and_paper(tmp_path / "runs")
    with pytest.raises(ElureproError, match="holds 2 sweeps.*analyze_all"):
        analyze("cifar100_11layer", tmp_path / "runs", tmp_path / "out", tensorboard=False)


def test_official_and_other_data_are_two_reports(tmp_path: Path) -> None:
    fake_meanact(tmp_path / "runs", seeds=range(2), epochs=3, layout="new")
    fake_meanact(tmp_path / "runs", seeds=range(2), epochs=3, layout="new", official=False)
    results = analyze_all("mnist_meanact", tmp_path / "runs", tmp_path / "out", tensorboard=False)
    assert len(results) == 2
    texts = sorted(r.report.read_text() for r in results)
    assert sum("not the official" in t.split("## Runs")[0] for t in texts) == 1
    for r in results:
        rows = read_csv(r.report.parent / "status.csv")
        assert all(row["finished"] == "2" for row in rows if row["configuration"] == "elu")


def test_table1_spans_two_data_sets_but_not_two_budgets(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_cifar18(runs, steps=2000, layout="new", budget="paper")
    fake_cifar18(runs, steps=2000, layout="new", budget="smoke", datasets=("cifar100",))
    results = analyze_all(
        "cifar_18layer", runs / "cifar_18layer", tmp_path / "out", tensorboard=False
    )
    assert len(results) == 2
    paper = next(r for r in results if "budget=paper" in r.sweep)
    assert "cifar10 (data" in paper.sweep and "cifar100 (data" in paper.sweep
    rows = read_csv(paper.report.parent / "table1.csv")
    ours = {r["dataset"]: r for r in rows if r["source"] == "ours"}
    assert set(ours) == {"cifar10", "cifar100"}
    smoke = next(r for r in results if "budget=smoke" in r.sweep)
    rows = read_csv(smoke.report.parent / "table1.csv")
    assert {r["dataset"] for r in rows if r["source"] == "ours"} == {"cifar100"}


def test_table1_with_two_fingerprints_of_one_data_set_is_split(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_cifar18(runs, steps=2000, layout="new", datasets=("cifar10", "cifar100"))
    fake_cifar18(runs, steps=2000, layout="new", datasets=("cifar10",), official={"cifar10": False})
    results = analyze_all("cifar_18layer", runs, tmp_path / "out", tensorboard=False)
    assert len(results) == 3
    for r in results:
        members = read_csv(r.report.parent / "status.csv")
        assert sum(int(m["finished"]) for m in members) == (
            2 if "cifar10 (data" in r.sweep and "cifar100" in r.sweep else 1
        )


def test_partial_reads_the_member_folders_provenance(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    values = {
        (u, False, s): {"test/error": 40.0 + s, "train/loss": 1.0}
        for u in ("elu", "relu")
        for s in range(2)
    }
    folders = fake_units(
        runs,
        "cifar100_11layer",
        "cifar100",
        values,
        budget="paper",
        status={key: None for key in values},
    )
    for folder in folders.values():
        prov = json.loads((folder / "provenance.json").read_text())
        prov["device"] = "cpu (new layout provenance)"
        (folder / "provenance.json").write_text(json.dumps(prov))
    result = analyze("cifar100_11layer", runs, tmp_path / "out", tensorboard=False, partial=True)
    text = result.report.read_text()
    assert "PARTIAL ANALYSIS" in text
    assert "cpu (new layout provenance)" in text
    assert "budget=paper" in text and "fingerprint" in text


def test_tensorboard_records_of_two_sweeps_do_not_mix(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from elurepro.analysis.tb_export import export
    from elurepro.runlog import dashboard_status, session_group

    runs = tmp_path / "runs"
    _smoke_and_paper(runs)
    sweeps = partition(collect_members(runs))
    for sweep in sweeps:
        note = export(runs, sweep.members, {}, "cifar100_11layer")
        (folder,) = sweep.folders
        assert f"--logdir {folder}" in note  # each sweep's records live in its own folder
        for m in sweep.members:
            assert dashboard_status(m.folder) == m.status, m.folder
        finished = {m.group for m in sweep.members if m.status == "finished"}
        assert {p.name for p in (Path(folder) / "_mean_std").iterdir()} == finished
    # The HParams tab never averages one budget's seeds with another's.
    groups = [{session_group(m.folder, m.info, "finished") for m in s.members} for s in sweeps]
    assert len(groups) == 2 and not groups[0] & groups[1]
    assert not (runs / "_hparams").exists()
