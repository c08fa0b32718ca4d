"""analyze --partial: unfinished members analysed as they stand, cut at a common step."""

import csv
import json

import pytest

from elurepro.analysis.report import analyze
from tests.analysis_fakes import write_any


def _records(epochs: int, offset: float) -> list[dict]:
    return [
        {
            "step": 10 * e,
            "epoch": float(e),
            "images": 640 * e,
            "wall_time": float(e),
            "act/median": offset + 0.01 * e,
            "val/loss": 2.0 - 0.01 * e,
        }
        for e in range(epochs + 1)
    ]


def _unfinished(runs, unit: str, seed: int, records: list[dict]):
    return write_any(runs, "new", "mnist_meanact", "mnist", unit, seed, records, status=None)[1]


def test_partial_cuts_every_member_at_the_common_step(tmp_path):
    lengths = {("elu", 0): 7, ("relu", 0): 5, ("elu", 1): 9, ("relu", 1): 6}
    for (group, seed), epochs in lengths.items():
        records = _records(epochs, 0.1 if group == "elu" else 0.5)
        folder = _unfinished(tmp_path, group, seed, records)
        prov = json.loads((folder / "provenance.json").read_text())
        (folder / "provenance.json").write_text(json.dumps({**prov, "device": "cpu (test)"}))
    out = tmp_path / "out"
    analyze("mnist_meanact", tmp_path, out, tensorboard=False, partial=True)
    report = (out / "report.md").read_text()
    assert "PARTIAL ANALYSIS" in report and "step 50 (epoch 5.0)" in report
    assert "cpu (test)" in report  # provenance from the member folders
    rows = {
        (r["configuration"], r["metric"]): r
        for r in csv.DictReader((out / "final_values.csv").open())
    }
    # Every member's value at epoch 5, whatever it reached: offset + 0.05.
    assert float(rows[("elu", "act/median")]["mean"]) == pytest.approx(0.15)
    assert float(rows[("relu", "act/median")]["mean"]) == pytest.approx(0.55)
    assert int(rows[("elu", "act/median")]["n"]) == 2


def test_without_partial_unfinished_members_are_not_averaged(tmp_path):
    for group in ("elu", "relu"):
        _unfinished(tmp_path, group, 0, _records(5, 0.1))
    out = tmp_path / "out"
    result = analyze("mnist_meanact", tmp_path, out, tensorboard=False)
    assert "PARTIAL" not in (out / "report.md").read_text()
    assert any("unfinished" in line for line in result.attention)
