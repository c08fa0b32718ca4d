"""scripts/migrate_runs.py: folders of earlier layouts moved once into the run store's layout.

The report tests run every `fake_*(layout="old")` through the migration too, and check the
migrated members' numbers against what the fakes wrote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from elurepro.activations import parse_activation
from elurepro.analysis.collect import collect_members
from elurepro.analysis.report import analyze_all
from elurepro.analysis.sweeps import partition
from elurepro.errors import ElureproError
from elurepro.members import MemberSpec
from elurepro.store.identity import SweepIdentity, config_key, member_key
from tests.analysis_fakes import (
    REPO,
    fake_autoencoder,
    member_info,
    migrate_old,
    migrate_script,
    population_dir,
    write_member,
)

CONFIG = {"experiment": "mnist_meanact", "optim": {"lr": 0.01}, "members": {"lrs": None}}
RECORDS = [{"step": s, "epoch": float(s), "act/median": 0.1 * s} for s in range(3)]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def old_population(runs: Path, name: str, budget: str, fingerprint: str | None) -> Path:
    """An old population in <experiment>/<data>-<budget>/, as the trainer before the run store
    wrote it: provenance.json (data, configuration) beside members/."""
    pop = population_dir(runs / "mnist_meanact", f"mnist-{budget}", name)
    if fingerprint is not None:
        data = {"name": "mnist", "fingerprint": fingerprint, "official": True}
        (pop / "provenance.json").write_text(json.dumps({"data": data, "config": CONFIG}))
    return pop


def test_old_layout_is_partitioned_by_budget_and_fingerprint(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    smoke = population_dir(runs, "mnist_meanact", "smoke-11111111")
    paper = old_population(runs, "paper-22222222", "paper", "beef")
    for group in ("elu", "relu"):
        info = member_info("mnist_meanact", "mnist", group, 0, budget="smoke")
        write_member(smoke, info, RECORDS)
        info = member_info("mnist_meanact", "mnist", group, 0, budget="paper")
        write_member(paper, info, RECORDS, None)
    # A member of the smoke population without summary or provenance.json takes the data and
    # configuration of its population's other members.
    info = member_info("mnist_meanact", "mnist", "lrelu", 0, budget="smoke")
    write_member(smoke, info, RECORDS, None)
    lines = migrate_old(runs)
    assert sum(line.startswith("moved ") and "/members/" in line for line in lines) == 5
    sweeps = partition(collect_members(runs))
    assert sorted((s.budgets[0], len(s.members)) for s in sweeps) == [("paper", 2), ("smoke", 3)]
    results = analyze_all("mnist_meanact", runs, tmp_path / "out", tensorboard=False)
    names = sorted(r.report.parent.name for r in results)
    assert [n.rsplit("-c", 1)[0] for n in names] == ["mnist-paper-dbeef", "mnist-smoke-df00d"]
    # Neither old population is left behind: the trainer would refuse to start beside one.
    assert not list(runs.rglob("members"))


def test_a_migrated_member_is_the_member_a_trainer_of_today_finds(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    pop = old_population(runs, "pop2-elu-s0-0badc0de", "smoke", "c0ffee00c0ffee00")
    (pop / "checkpoint.pt").write_bytes(b"old")
    info = member_info("mnist_meanact", "mnist", "lrelu", 3, budget="smoke")
    info["activation_params"] = {"alpha": 0.3}
    old = write_member(pop, info, RECORDS)
    # The old trainer's summary.json held the population's provenance (data, configuration).
    summary = json.loads((old / "summary.json").read_text())
    provenance = json.loads((pop / "provenance.json").read_text())
    (old / "summary.json").write_text(json.dumps({**summary, **provenance}))
    files = {name: (old / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
    migrate_old(runs)
    (member,) = collect_members(runs)
    spec = MemberSpec(parse_activation({"name": "lrelu", "alpha": 0.3}), seed=3)
    sweep = SweepIdentity("mnist_meanact", "mnist", "smoke", "c0ffee00c0ffee00", config_key(CONFIG))
    assert member.folder == runs / "mnist_meanact" / sweep.folder / "lrelu_alpha0.3" / "s3"
    assert member.info["key"] == member_key(sweep, spec.identity())
    assert member.info["sweep"] == sweep.key and member.id == "lrelu_alpha0.3-s3"
    # The numbers are the files the old trainer wrote, untouched; provenance beside them.
    assert {name: (member.folder / name).read_bytes() for name in files} == files
    assert json.loads((member.folder / "provenance.json").read_text())["config"] == CONFIG
    record = json.loads((member.folder.parent.parent / "sweep.json").read_text())
    assert record["key"] == sweep.key and record["data"]["fingerprint"] == "c0ffee00c0ffee00"
    kept = member.folder.parent.parent / "_populations" / pop.name / "checkpoint.pt"
    assert kept.read_bytes() == b"old" and not pop.exists()


def test_learning_rates_in_the_old_names_stay_in_the_new(tmp_path: Path) -> None:
    fake_autoencoder(tmp_path / "runs", acts=("elu",), lrs=(0.01, 0.001), epochs=2, layout="old")
    groups = sorted(m.group for m in collect_members(tmp_path / "runs"))
    assert groups == ["elu-lr0.001", "elu-lr0.01"]


def test_dry_run_changes_nothing_and_a_second_run_is_a_no_op(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    pop = old_population(runs, "pop-0badc0de", "smoke", "f00d")
    for group in ("elu", "relu"):
        write_member(pop, member_info("mnist_meanact", "mnist", group, 0, budget="smoke"), RECORDS)
    (pop / "members" / "elu-s0" / "analysis.tfevents.1").write_bytes(b"old headline")
    (runs / "_hparams" / "elu-s0").mkdir(parents=True)
    (runs / "_hparams" / "elu-s0" / "events.out.tfevents.1").write_bytes(b"old session")
    before = tree(runs)
    lines: list[str] = []
    assert migrate_script().migrate(runs, dry_run=True, say=lines.append) == 0
    assert tree(runs) == before
    assert len([line for line in lines if line.startswith("would move ")]) == 2
    assert "would remove 2 event file(s)" in lines[-1]

    migrate_old(runs)
    assert not (runs / "_hparams").exists() and not list(runs.rglob("analysis.tfevents*"))
    after = tree(runs)
    assert migrate_old(runs) == [] and tree(runs) == after


def test_a_member_whose_files_do_not_say_where_it_goes_is_left_with_one_line(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    pop = old_population(runs, "pop-0badc0de", "smoke", None)  # no provenance.json
    for group in ("elu", "relu"):
        info = member_info("mnist_meanact", "mnist", group, 0, budget="smoke")
        write_member(pop, info, RECORDS, status=None)  # no summary.json either
    before = tree(runs)
    lines: list[str] = []
    assert migrate_script().migrate(runs, say=lines.append) == 2
    assert tree(runs) == before
    assert len(lines) == 2 and all(line.startswith(f"left {pop}/members/") for line in lines)
    assert "data fingerprint, configuration" in lines[0]
    with pytest.raises(ElureproError, match="scripts/migrate_runs.py"):
        collect_members(runs)


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_the_command_line(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    pop = old_population(runs, "pop-0badc0de", "smoke", "f00d")
    write_member(pop, member_info("mnist_meanact", "mnist", "elu", 0, budget="smoke"), RECORDS)

    def command(*args: str) -> subprocess.CompletedProcess:
        script = str(REPO / "scripts" / "migrate_runs.py")
        return subprocess.run(
            [sys.executable, script, str(runs), *args], capture_output=True, text=True
        )

    proc = command("--dry-run")
    assert proc.returncode == 0 and proc.stdout.startswith("would move ")
    assert command().returncode == 0
    proc = command()
    assert proc.returncode == 0 and proc.stdout.strip() == f"{runs}: nothing to migrate"
