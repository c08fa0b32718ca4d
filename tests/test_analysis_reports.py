"""Tables, figures, status lists and the CLI, from synthetic run folders."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from elurepro.analysis.collect import collect_members
from elurepro.analysis.context import Analysis
from elurepro.analysis.figures import fig2_mean_activation
from elurepro.analysis.report import analyze
from elurepro.analysis.reported import load_reported
from elurepro.analysis.table import from_members
from elurepro.analysis.tb_export import export
from elurepro.analyze import main
from elurepro.errors import ElureproError
from tests.analysis_fakes import (
    fake_autoencoder,
    fake_cifar11,
    fake_cifar18,
    fake_imagenet,
    fake_meanact,
    member_info,
    migrate_old,
    population_dir,
    write_any,
    write_member,
)


def analyze_fakes(root: Path, experiment: str):
    """Analyse the fake runs under root/runs/<experiment> into root/out, without TensorBoard."""
    return analyze(experiment, root / "runs" / experiment, root / "out", tensorboard=False)


REPO = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def mean_std(values) -> tuple[float, float]:
    values = list(values)
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, std


def assert_figures_decode(paths: list[Path]) -> None:
    pngs = [p for p in paths if p.suffix == ".png"]
    assert pngs and len(pngs) * 2 == len(paths)
    for png in pngs:
        with Image.open(png) as image:
            image.load()
            assert image.width > 300 and image.height > 200
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-"


# ---------------------------------------------------------------- collect


def _member(runs: Path, unit: str, records: list[dict], **kwargs) -> Path:
    """One mnist_meanact member (seed 0) in the run store's layout; returns its folder."""
    return write_any(runs, "new", "mnist_meanact", "mnist", unit, 0, records, **kwargs)[1]


def test_collect_statuses_and_truncated_last_line(tmp_path: Path) -> None:
    records = [{"step": s, "epoch": s / 10, "train/loss": 1.0 / (s + 1)} for s in range(0, 40, 10)]
    _member(tmp_path, "elu", records)
    _member(tmp_path, "relu", records, status="diverged", diverged_at_step=30)
    folder = _member(tmp_path, "lrelu", records, status=None)
    with (folder / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 40, "epoch": 4.0, "train/lo')  # killed mid-write
    with pytest.warns(UserWarning, match="truncated last line"):
        members = {m.group: m for m in collect_members(tmp_path)}
    assert {g: m.status for g, m in members.items()} == {
        "elu": "finished",
        "relu": "diverged",
        "lrelu": "unfinished",
    }
    assert len(members["lrelu"].records) == 4
    assert members["relu"].diverged_at_step == 30
    x, y = from_members([members["elu"]]).series(0, "train/loss")
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert y.tolist() == pytest.approx([1.0, 1 / 11, 1 / 21, 1 / 31])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("metrics.jsonl", '{"step": 0}\n{"step": 1, oops\n{"step": 2}\n', "line 2"),
        ("member.json", "{not json", "member.json is not valid JSON"),
        ("summary.json", '{"status": "done"}', "summary.json must hold"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path: Path, name: str, content: str, message: str):
    folder = _member(tmp_path, "elu", [{"step": 0}])
    (folder / name).write_text(content)
    with pytest.raises(ElureproError, match=message) as err:
        collect_members(tmp_path)
    assert str(folder / name) in str(err.value)


def test_member_json_missing_key_is_named(tmp_path: Path) -> None:
    folder = _member(tmp_path, "elu", [{"step": 0}])
    info = json.loads((folder / "member.json").read_text())
    del info["group"]
    (folder / "member.json").write_text(json.dumps(info))
    with pytest.raises(ElureproError, match="lacks the key.*group"):
        collect_members(tmp_path)


def test_a_member_of_the_layout_before_the_run_store_names_the_script(tmp_path: Path) -> None:
    pop = population_dir(tmp_path, "mnist_meanact")
    folder = write_member(pop, member_info("mnist_meanact", "mnist", "elu", 0), [{"step": 0}])
    with pytest.raises(ElureproError, match="scripts/migrate_runs.py") as err:
        collect_members(tmp_path)
    assert str(folder) in str(err.value)


# ---------------------------------------------------------------- mnist_meanact


# The old layout (the default of the fakes, which most analysis tests read) in make test-slow:
# 4-5 s of the default suite.
@pytest.fixture(scope="module", params=[pytest.param("old", marks=pytest.mark.slow), "new"])
def meanact(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("meanact")
    data = fake_meanact(
        root / "runs", seeds=range(4), epochs=12, skip=(("relu", 3),), layout=request.param
    )
    result = analyze_fakes(root, "mnist_meanact")
    return data, result, root / "out"


def test_meanact_final_table_equals_independent_means(meanact) -> None:
    data, result, out = meanact
    assert_figures_decode(result.figures)
    rows = {(r["configuration"], r["metric"]): r for r in read_csv(out / "final_values.csv")}
    for group in ("elu", "relu", "lrelu"):
        for metric in ("act/median", "train/loss", "val/loss", "val/error"):
            finals = [v[metric][-1] for (g, _), v in data.items() if g == group]
            mean, std = mean_std(finals)
            row = rows[(group, metric)]
            assert int(row["n"]) == len(finals) == (3 if group == "relu" else 4)
            assert float(row["mean"]) == pytest.approx(mean)
            assert float(row["std"]) == pytest.approx(std)


def test_meanact_appendix_c_and_per_epoch_csv(meanact) -> None:
    data, _, out = meanact
    rows = read_csv(out / "appendix_c.csv")
    assert len(rows) == len(data) * 4  # pooled + 3 layers per member
    for row in rows:
        curves = data[(row["configuration"], int(row["seed"]))]
        metric = "act/median" if row["layer"] == "all units" else f"act/median/{row['layer']}"
        y = curves[metric][1:]  # epochs 1..E
        assert float(row["variance_of_median"]) == pytest.approx(np.var(y))
        assert float(row["variance_of_differences"]) == pytest.approx(np.var(np.diff(y)))
    per_epoch = read_csv(out / "per_epoch.csv")
    assert len(per_epoch) == len(data) * 13
    first = next(r for r in per_epoch if r["member"] == "elu-s2" and r["epoch"] == "5.0")
    assert float(first["act/median"]) == pytest.approx(data[("elu", 2)]["act/median"][5])


def test_meanact_report_names_the_missing_member_and_answers_checks(meanact) -> None:
    _, result, out = meanact
    text = result.report.read_text()
    assert "missing: relu-s3 (relu, seed 3)" in text
    assert any("relu-s3" in line for line in result.attention)
    status = {r["configuration"]: r for r in read_csv(out / "status.csv")}
    assert status["relu"]["finished"] == "3" and status["relu"]["missing"] == "1"
    assert "closest to zero" in text and "**yes** — elu" in text
    assert "budget=short" in text and "MNIST" in text


def test_meanact_check_says_no_when_elu_is_not_closest(tmp_path: Path) -> None:
    offsets = {"elu": 0.30, "lrelu": 0.01, "relu": 0.35}
    fake_meanact(tmp_path / "runs", seeds=range(2), epochs=4, offsets=offsets)
    members = collect_members(tmp_path / "runs")
    a = Analysis("mnist_meanact", members, [])
    closest, fastest = fig2_mean_activation.checks(a)
    assert "**no** — lrelu" in closest
    # Independent: mean train/loss over epochs 1..4, averaged over the two seeds.
    assert "**yes** — elu" in fastest


# ---------------------------------------------------------------- mnist_autoencoder


@pytest.mark.parametrize("layout", ["old", "new"])
def test_autoencoder_marks_divergence_and_tabulates_finals(tmp_path: Path, layout: str) -> None:
    data = fake_autoencoder(
        tmp_path / "runs",
        acts=("elu", "relu"),
        lrs=(0.01, 0.001),
        seeds=(0, 1),
        epochs=6,
        diverge={("relu", 0.01, 1): 2},
        layout=layout,
    )
    result = analyze_fakes(tmp_path, "mnist_autoencoder")
    assert_figures_decode(result.figures)
    text = result.report.read_text()
    member = "relu-lr0.01-s1"  # the old layout's relu@lr=0.01-s1, as migrated
    assert f"diverged: {member}" in text
    rows = {(r["activation"], r["lr"]): r for r in read_csv(tmp_path / "out" / "final_values.csv")}
    relu = rows[("relu", "0.01")]
    assert (relu["finished"], relu["diverged"]) == ("1", "1")
    assert relu["diverged_at_epoch"] == "3.0"
    assert float(relu["train_mean"]) == pytest.approx(data[("relu", 0.01, 0)][0][-1])
    elu = rows[("elu", "0.001")]
    want = mean_std([data[("elu", 0.001, s)][1][-1] for s in (0, 1)])
    assert (float(elu["test_mean"]), float(elu["test_std"])) == pytest.approx(want)
    assert "lr 0.01: is ELU's final train/recon_error the lowest? **yes**" in text


# ---------------------------------------------------------------- cifar100_11layer


def member_folder(runs: Path, member_id: str) -> Path:
    """The folder of the member with id `member_id`, in either layout."""
    (folder,) = [
        p.parent for p in runs.rglob("member.json") if json.loads(p.read_text())["id"] == member_id
    ]
    return folder


# The old layout (the default of the fakes, which most analysis tests read) in make test-slow:
# 7 s of the default suite.
@pytest.fixture(scope="module", params=[pytest.param("old", marks=pytest.mark.slow), "new"])
def cifar(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("cifar")
    finals = fake_cifar11(root / "runs", steps=4000, skip=(("relu", 3),), layout=request.param)
    # Make one member unfinished: it must be listed and left out of means and tests.
    (member_folder(root / "runs", "srelu-s2") / "summary.json").unlink()
    finals.pop(("srelu", 2))
    result = analyze_fakes(root, "cifar100_11layer")
    return finals, result, root / "out"


def test_cifar100_table_equals_independent_means(cifar) -> None:
    finals, result, out = cifar
    assert_figures_decode(result.figures)
    rows = {r["configuration"]: r for r in read_csv(out / "final_values.csv")}
    assert set(rows) == {
        "elu",
        "srelu",
        "lrelu",
        "relu",
        "elu+bn",
        "srelu+bn",
        "lrelu+bn",
        "relu+bn",
    }
    for config, row in rows.items():
        errors = [v[0] for (g, _), v in finals.items() if g == config]
        mean, std = mean_std(errors)
        assert int(row["n"]) == len(errors)
        assert float(row["test_error_mean"]) == pytest.approx(mean)
        assert float(row["test_error_std"]) == pytest.approx(std)
    assert float(rows["elu"]["difference"]) == pytest.approx(
        float(rows["elu"]["test_error_mean"]) - 28.75
    )
    assert rows["elu+bn"]["paper_test_error"] == ""


def test_cifar100_wilcoxon_rows(cifar) -> None:
    _, result, out = cifar
    rows = {(r["comparison"], r["metric"]): r for r in read_csv(out / "wilcoxon.csv")}
    assert len(rows) == 16
    # ELU is better on every seed: the exact one-sided p is 1 / 2^n.
    full = rows[("elu vs lrelu", "test/error")]
    assert (full["n"], full["a_better"]) == ("10", "10")
    assert float(full["p_one_sided_less"]) == pytest.approx(1 / 1024)
    assert float(full["p_two_sided"]) == pytest.approx(2 / 1024)
    unpaired = rows[("elu vs relu", "train/loss")]
    assert unpaired["n"] == "9" and "[3]" in unpaired["note"]
    assert float(unpaired["smallest_p_one_sided"]) == pytest.approx(1 / 512)
    assert rows[("elu vs srelu", "test/error")]["n"] == "9"  # srelu-s2 is unfinished
    assert rows[("elu+bn vs elu", "test/error")]["a_better"] == "0"
    assert rows[("relu+bn vs relu", "test/error")]["a_better"] == "9"
    text = result.report.read_text()
    assert "p = 0.00098 one-sided" in text and "p = 0.00195 two-sided" in text
    assert "p = 0.00195 one-sided" in text  # the n = 9 comparisons


def test_cifar100_lists_unfinished_and_missing(cifar) -> None:
    _, result, out = cifar
    text = result.report.read_text()
    assert "unfinished: srelu-s2" in text
    assert "missing: relu-s3 (relu, seed 3)" in text
    status = {r["configuration"]: r for r in read_csv(out / "status.csv")}
    assert (status["srelu"]["finished"], status["srelu"]["unfinished"]) == ("9", "1")


def test_cifar10_run_is_not_compared_with_cifar100_numbers(tmp_path: Path) -> None:
    fake_cifar11(
        tmp_path / "runs",
        seeds=range(3),
        steps=2000,
        dataset="cifar10",
        official=False,
        budget="short",
        batchnorm=False,
    )
    result = analyze_fakes(tmp_path, "cifar100_11layer")
    text = result.report.read_text()
    assert "Not comparable with the paper's numbers" in text
    assert "CIFAR-100" in text and "lossy CIFAR-10 copy" in text
    rows = read_csv(tmp_path / "out" / "final_values.csv")
    assert all(r["difference"] == "" for r in rows)
    assert all("CIFAR-100" in r["not_comparable_because"] for r in rows)
    assert "missing: configuration relu+bn has no members at all" in text


# ---------------------------------------------------------------- cifar_18layer


def test_table1_names_each_schedule_reading_its_runs_used() -> None:
    from types import SimpleNamespace

    from elurepro.analysis.schedule import schedule_line

    def run(name):
        return SimpleNamespace(provenance={"config": {"optim": {"schedule": name}}})

    line = schedule_line([run("D3"), run("D1"), run("D3")])
    assert "**D1** (one drop" in line and "**D3** (÷10 every 35k" in line
    assert "**D2**" not in line


@pytest.mark.parametrize("layout", ["old", "new"])
def test_cifar18_table1_and_phases(tmp_path: Path, layout: str) -> None:
    records = fake_cifar18(tmp_path / "runs", official={"cifar10": False}, layout=layout)
    result = analyze_fakes(tmp_path, "cifar_18layer")
    assert_figures_decode(result.figures)
    rows = read_csv(tmp_path / "out" / "table1.csv")
    ours = {r["dataset"]: r for r in rows if r["source"] == "ours"}
    c100 = records["cifar100"][-1]["test/error"]
    assert float(ours["cifar100"]["test_error"]) == pytest.approx(c100)
    assert float(ours["cifar100"]["difference"]) == pytest.approx(c100 - 24.28)
    assert ours["cifar10"]["difference"] == "" and "lossy" in ours["cifar10"]["note"]
    paper = {(r["network"], r["dataset"]): r for r in rows if r["source"] == "paper"}
    assert len(paper) == 16 and float(paper[("AlexNet", "cifar100")]["test_error"]) == 45.80
    text = result.report.read_text()
    assert "| ours − paper ELU-Network (pp) | not comparable | " + f"{c100 - 24.28:+.2f}" in text
    assert "[VERIFY]" in text
    assert "Schedule: **D1** (one drop to 0.001 at 35k" in text  # runs that name none are D1
    phases = read_csv(tmp_path / "out" / "phases.csv")
    by_step = {r["step"]: r["test/error"] for r in records["cifar10"]}
    c10 = [p for p in phases if p["data set"] == "lossy CIFAR-10 copy"]
    # D1 phase ends, scaled to the 20.5k-step run: 11.5k, 16.5k, 20.5k.
    assert [p["phase end (step)"] for p in c10] == ["11500", "16500", "20500"]
    for p in c10:
        assert float(p["test error (%)"]) == pytest.approx(
            by_step[int(p["phase end (step)"])], abs=0.005
        )


# ---------------------------------------------------------------- imagenet


@pytest.mark.parametrize("layout", ["old", "new"])
def test_imagenet_iterations_to_20_percent_and_timing(tmp_path: Path, layout: str) -> None:
    records = fake_imagenet(tmp_path / "runs", layout=layout)
    result = analyze_fakes(tmp_path, "imagenet_15layer_spp")
    assert_figures_decode(result.figures)
    members = {r["configuration"]: r for r in read_csv(tmp_path / "out" / "members.csv")}
    for act in ("elu", "relu"):
        first = next(r["step"] for r in records[act] if r["val/top5_error"] <= 20.0)
        assert members[act]["iterations to 20 % top-5"] == str(first)
    assert float(members["elu"]["h per 10k it"]) == pytest.approx(12.0)
    assert float(members["relu"]["h per 10k it"]) == pytest.approx(11.5)
    text = result.report.read_text()
    assert f"{(12.0 / 11.5 - 1) * 100:+.1f} % (same device)" in text
    assert "| 160,000 |" in text and "| 200,000 |" in text


# ---------------------------------------------------------------- selection, TensorBoard, CLI


def test_duplicate_finished_members_are_an_error(tmp_path: Path) -> None:
    fake_meanact(tmp_path / "runs", groups=("elu",), seeds=range(1), epochs=2, layout="new")
    # A copy of the sweep folder under another name: the same sweep id, twice.
    (sweep,) = {m.sweep_folder for m in collect_members(tmp_path / "runs")}
    shutil.copytree(sweep, sweep.parent / "copy")
    with pytest.raises(ElureproError, match="two finished members"):
        analyze_fakes(tmp_path, "mnist_meanact")


def test_tensorboard_hparams_and_figures(tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    runs = tmp_path / "runs" / "imagenet_15layer_spp"
    fake_imagenet(tmp_path / "runs", steps=60_000)
    result = analyze("imagenet_15layer_spp", runs, tmp_path / "out")
    assert "(2 members, " in (result.tensorboard or "")
    # Each member's own run holds its HParams session (these fakes had none: the analysis
    # wrote them), so the HParams tab links to the member's curves; no run per session.
    (member,) = [m.folder for m in collect_members(runs) if m.id == "relu-s0"]
    hp = event_accumulator.EventAccumulator(str(member))
    hp.Reload()
    assert b"relu" in hp.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    analysis = event_accumulator.EventAccumulator(str(member.parent.parent / "_analysis"))
    analysis.Reload()
    assert b"val_full/top5_error" in analysis.PluginTagToContent("hparams")["_hparams_/experiment"]
    assert "imagenet_15layer_spp/fig6_learning_curves" in analysis.Tags()["images"]
    # A rerun replaces the records instead of adding a second copy (the headline values' file
    # takes a new name each time, see tb_export._write_headlines).
    before = sorted(p.name.split(".")[0] for p in member.glob("*tfevents*"))
    export(runs, collect_members(runs), {}, "imagenet_15layer_spp")
    assert sorted(p.name.split(".")[0] for p in member.glob("*tfevents*")) == before
    # The writer's file (figures, layout) and the HParams experiment.
    assert len(list((member.parent.parent / "_analysis").glob("*tfevents*"))) == 2


def test_cli_missing_runs_folder_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "elurepro.analyze", "mnist_meanact", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(tmp_path / "nope") in lines[0]


def test_cli_names_the_missing_run(tmp_path: Path, capsys) -> None:
    records = fake_imagenet(tmp_path / "runs", steps=40_000)
    pop = tmp_path / "runs" / "imagenet_15layer_spp" / "pop-0badc0de"
    info = member_info("imagenet_15layer_spp", "imagenet", "elu", 1)
    write_member(pop, info, records["elu"])  # relu seed 1 was never trained
    migrate_old(tmp_path / "runs")
    runs = tmp_path / "runs" / "imagenet_15layer_spp"
    out = tmp_path / "out"
    code = main(["imagenet_15layer_spp", str(runs), "--out", str(out), "--no-tensorboard"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"report: {out / 'report.md'}" in printed
    assert "note: missing: relu-s1 (relu, seed 1)" in printed
    assert "fig6_learning_curves.png" in printed
    assert "missing: relu-s1" in (out / "report.md").read_text()


def test_cli_default_folders_and_wrong_experiment(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["cifar_18layer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "runs/cifar_18layer" in err
    fake_cifar18(tmp_path / "runs", datasets=("cifar100",))
    assert main(["cifar_18layer", "--no-tensorboard"]) == 0
    # Beside the runs it reads; results/ is written only when --out says so.
    assert (tmp_path / "runs" / "cifar_18layer" / "report" / "report.md").is_file()
    assert not (tmp_path / "results").exists()
    meta = population_dir(tmp_path / "runs", "cifar_18layer", "x-2")
    (meta / "members" / "bad").mkdir(parents=True)
    (meta / "members" / "bad" / "member.json").write_text(json.dumps({"id": "bad"}))
    assert main(["cifar_18layer", "--no-tensorboard"]) == 2
    assert "run `python scripts/migrate_runs.py RUNS` once" in capsys.readouterr().err


def test_reported_csv_holds_the_papers_numbers() -> None:
    rows = load_reported(REPO / "results" / "reported.csv")
    value = {(r.experiment, r.quantity, r.configuration): r for r in rows}
    expected = {
        ("cifar100_11layer", "test_error", "elu"): 28.75,
        ("cifar100_11layer", "test_error_std", "elu"): 0.24,
        ("cifar100_11layer", "test_error", "srelu"): 29.35,
        ("cifar100_11layer", "test_error_std", "srelu"): 0.29,
        ("cifar100_11layer", "test_error", "lrelu"): 30.59,
        ("cifar100_11layer", "test_error_std", "lrelu"): 0.29,
        ("cifar100_11layer", "test_error", "relu"): 31.56,
        ("cifar100_11layer", "test_error_std", "relu"): 0.37,
        ("cifar_18layer", "test_error_cifar10", "ELU-Network"): 6.55,
        ("cifar_18layer", "test_error_cifar100", "ELU-Network"): 24.28,
        ("cifar_18layer", "test_error_cifar100", "Fract. Max-Pooling"): 27.62,
        ("cifar_18layer", "test_error_cifar10", "Fract. Max-Pooling"): 4.50,
        ("imagenet_15layer_spp", "iterations_to_20pct_top5", "elu"): 160_000,
        ("imagenet_15layer_spp", "iterations_to_20pct_top5", "relu"): 200_000,
        ("imagenet_15layer_spp", "final_top5_error", "elu"): 10,
        ("imagenet_15layer_spp", "wall_time_per_10k_iterations", "elu"): 12.15,
        ("imagenet_15layer_spp", "wall_time_per_10k_iterations", "relu"): 11.48,
    }
    for key, number in expected.items():
        assert value[key].value == number, key
    table1 = [r for r in rows if r.experiment == "cifar_18layer"]
    assert len(table1) == 16
    for network in ("AlexNet", "DSN", "NiN", "Maxout", "All-CNN"):
        assert all("[VERIFY]" in r.note for r in table1 if r.configuration == network)


def test_configurations_the_runs_did_not_ask_for_are_not_called_missing(tmp_path: Path) -> None:
    """Runs that asked for ELU, ReLU and LReLU without BN: SReLU and the BN variants are 'not
    requested'; LReLU, asked for but without members, is still 'missing'."""
    skip = {(group, seed) for group in ("srelu", "lrelu") for seed in range(3)}
    fake_cifar11(tmp_path / "runs", seeds=range(3), steps=2000, batchnorm=False, skip=skip)
    for summary in (tmp_path / "runs").rglob("summary.json"):
        data = json.loads(summary.read_text())
        data["config"]["members"] = {"activations": ["elu", "relu", "lrelu"], "batchnorm": [False]}
        summary.write_text(json.dumps(data))
    result = analyze_fakes(tmp_path, "cifar100_11layer")
    text = result.report.read_text()
    status = {r["configuration"]: r["missing"] for r in read_csv(tmp_path / "out" / "status.csv")}
    assert status["srelu"] == status["elu+bn"] == status["relu+bn"] == "not requested"
    assert status["lrelu"] == "all"
    assert "missing: configuration lrelu has no members at all" in text
    assert "missing: configuration srelu" not in text
