"""The long-format table of runs: the numbers each member wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from elurepro.analysis.collect import collect_members
from elurepro.analysis.table import AXES, read_runs
from tests.analysis_fakes import fake_autoencoder, write_any


def test_every_logged_value_is_one_row_with_its_members_configuration(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    fake_autoencoder(
        runs,
        acts=("elu", "relu"),
        lrs=(0.01,),
        seeds=(0, 1),
        epochs=4,
        diverge={("relu", 0.01, 1): 2},
        layout="new",
    )
    table = read_runs(runs)
    members = collect_members(runs)
    assert [m.folder for m in table.members] == [m.folder for m in members]
    assert len(table.rows) == sum(
        sum(k not in ("step", "epoch", "images", "wall_time") for k in r)
        for m in members
        for r in m.records
    )
    for i, m in enumerate(members):
        # What the fake run wrote, line by line (a fresh run: no step logged twice).
        lines = (m.folder / "metrics.jsonl").read_text().splitlines()
        written = [json.loads(line) for line in lines]
        for metric in {k for r in written for k in r} - set(AXES):
            rows = table.where((table.rows["member"] == i) & (table.rows["metric"] == metric))
            logged = [r for r in written if r.get(metric) is not None]
            assert rows.rows["step"].tolist() == [r["step"] for r in logged]
            for axis in ("epoch", "wall_time"):
                wrote = [math.nan if r.get(axis) is None else r[axis] for r in logged]
                np.testing.assert_array_equal(rows.rows[axis], wrote)
            # NaN where NaN was logged.
            np.testing.assert_array_equal(rows.rows["value"], [r[metric] for r in logged])
            x, _ = table.series(i, metric, x="step")
            assert x.tolist() == [r["step"] for r in logged]
    train = table.metric("train/recon_error")
    diverged = train.where(train.column("status") == "diverged")
    assert set(diverged.column("id")) == {"relu-lr0.01-s1"}
    assert set(diverged.column("diverged_at")) == {3 * 938}
    assert set(table.column("lr")) == {0.01} and set(table.column("bn")) == {False}
    assert set(table.column("budget")) == {"short"} and set(table.column("data")) == {"mnist"}
    assert set(table.column("sweep")) == {str(m.sweep_folder) for m in members}
    assert table.metrics() == ["test/recon_error", "train/recon_error"]


def test_a_resumed_runs_later_line_wins(tmp_path: Path) -> None:
    records = [
        {"step": 0, "epoch": 0.0, "val/loss": 2.3},
        {"step": 10, "epoch": 1.0, "val/loss": 1.0},
        {"step": 20, "epoch": 2.0, "val/loss": 0.9},  # lost: the checkpoint was at step 10
        {"step": 20, "epoch": 2.0, "val/loss": 0.8},
        {"step": 30, "epoch": 3.0, "val/loss": 0.7},
    ]
    write_any(tmp_path, "new", "mnist_meanact", "mnist", "elu", 0, records)
    table = read_runs(tmp_path)
    by_epoch = table.by_member_epoch()
    assert {e: v["val/loss"] for (_, e), v in by_epoch.items()} == {
        0.0: 2.3,
        1.0: 1.0,
        2.0: 0.8,
        3.0: 0.7,
    }
    x, y = table.series(0, "val/loss", "step")
    assert x.tolist() == [0, 10, 20, 30] and y.tolist() == [2.3, 1.0, 0.8, 0.7]
    assert not any(math.isnan(e) for _, e in by_epoch)


def test_series_final_and_logged_read_the_numbers_the_run_wrote(tmp_path: Path) -> None:
    records = [
        {"step": 0, "epoch": 0.0, "train/loss": 2.5},
        {"step": 10, "epoch": 1.0, "train/loss": 1.5, "test/error": 40.0},
        {"step": 20, "epoch": 2.0, "train/loss": 1.25},  # lost: resumed from step 10
        {"step": 20, "epoch": 2.0, "train/loss": 1.0, "test/error": 30.0},
        {"step": 25, "test/error": 20.0},  # an end-of-run evaluation without an epoch
    ]
    write_any(tmp_path, "new", "mnist_meanact", "mnist", "elu", 0, records, final={"x": 7.0})
    write_any(tmp_path, "new", "mnist_meanact", "mnist", "relu", 0, records[:2], status=None)
    table = read_runs(tmp_path)
    elu, relu = sorted(table.members, key=lambda m: m.unit)
    x, y = table.series(elu, "train/loss")
    assert x.tolist() == [0.0, 1.0, 2.0] and y.tolist() == [2.5, 1.5, 1.0]
    x, y = table.series(elu, "test/error", x="step")
    assert x.tolist() == [10.0, 20.0, 25.0] and y.tolist() == [40.0, 30.0, 20.0]
    x, y = table.epoch_series(elu, "train/loss")
    assert x.tolist() == [1.0, 2.0] and y.tolist() == [1.5, 1.0]
    assert table.final(elu, "x") == 7.0  # the summary's, though never logged
    assert table.final(elu, "test/error") == 20.0  # not in the summary: the last logged
    assert table.final(relu, "train/loss") == 1.5  # unfinished: no summary
    assert table.final(relu, "val/error") is None
    assert table.logged([relu]) == {"train/loss", "test/error"}
    assert table.logged() == {"train/loss", "test/error"}
    assert table.series(table.index(relu), "nothing")[0].size == 0
    assert table.last_step(elu) == 25 and table.last_epoch(elu) == 2.0
    assert table.epoch_point(elu) == (10, 1.0) and table.step_to_epoch(elu, 15) == 1.5
    cut = table.until(10)
    assert cut.last_step(elu) == 10 and cut.series(elu, "test/error", "step")[1].tolist() == [40.0]


def test_wall_time_is_an_axis_and_layers_come_in_order(tmp_path: Path) -> None:
    records = [
        {"step": 0, "epoch": 0.0, "wall_time": 0.0, "act/median/layer10": 0.1},
        {"step": 10, "epoch": 1.0, "wall_time": 4.0, "act/median/layer2": 0.2},
        {"step": 20, "epoch": 2.0, "act/median": 0.3},  # a line without a time
    ]
    write_any(tmp_path, "new", "mnist_meanact", "mnist", "elu", 0, records)
    table = read_runs(tmp_path)
    x, t = table.axis(0, "wall_time")
    assert x.tolist() == [0.0, 10.0] and t.tolist() == [0.0, 4.0]
    assert table.layer_metrics("act/median") == ["act/median/layer2", "act/median/layer10"]


def test_a_selection_is_the_table_of_those_members_alone(tmp_path: Path) -> None:
    for unit, loss in (("elu", 1.0), ("relu", 2.0)):
        records = [{"step": 10, "epoch": 1.0, "train/loss": loss}]
        write_any(tmp_path, "new", "mnist_meanact", "mnist", unit, 0, records)
    table = read_runs(tmp_path)
    relu = next(m for m in table.members if m.unit == "relu")
    alone = table.select([relu])
    assert alone.members == [relu] and list(alone.config["unit"]) == ["relu"]
    assert alone.rows["member"].tolist() == [0] and alone.final(relu, "train/loss") == 2.0
    assert alone.series(0, "train/loss")[1].tolist() == [2.0]
