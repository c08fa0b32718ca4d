"""Per experiment: collect the members, write report.md, tables and figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from elurepro.analysis import tb_export
from elurepro.analysis.cifar import (
    CIFAR100_11LAYER_CONFIGS,
    report_cifar100_11layer,
    report_cifar_18layer,
)
from elurepro.analysis.collect import DIVERGED, FINISHED, UNFINISHED, Member, collect_members
from elurepro.analysis.context import Analysis, ReportWriter, status_section
from elurepro.analysis.figures import paper_style
from elurepro.analysis.imagenet import report_imagenet
from elurepro.analysis.mnist import report_mnist_autoencoder, report_mnist_meanact
from elurepro.analysis.tables import load_reported
from elurepro.errors import ConfigError, ElureproError


@dataclass(frozen=True)
class Experiment:
    title: str
    report: Callable[[Analysis, ReportWriter], None]
    expected: tuple[str, ...] = ()  # configurations the paper has; absent ones are reported
    single_dataset: bool = True


EXPERIMENTS: dict[str, Experiment] = {
    "mnist_meanact": Experiment(
        "Mean activations and learning speed on MNIST (Fig. 2, Appendix C)",
        report_mnist_meanact,
        ("elu", "lrelu", "relu"),
    ),
    "mnist_autoencoder": Experiment("Deep autoencoder on MNIST (Fig. 3)", report_mnist_autoencoder),
    "cifar100_11layer": Experiment(
        "11-layer CNN, activations with and without BN (Fig. 4, Fig. 5, §6 tests)",
        report_cifar100_11layer,
        tuple(CIFAR100_11LAYER_CONFIGS),
    ),
    "cifar_18layer": Experiment(
        "18-layer ELU CNN on CIFAR-10 and CIFAR-100 (Table 1)",
        report_cifar_18layer,
        single_dataset=False,
    ),
    "imagenet_15layer_spp": Experiment(
        "15-layer SPP network on ImageNet, ELU vs ReLU (Fig. 6)",
        report_imagenet,
        ("elu", "relu"),
    ),
}


@dataclass
class AnalysisResult:
    """Where the analysis wrote its output, and what the user should look at."""

    report: Path
    tables: list[Path]
    figures: list[Path]
    attention: list[str] = field(default_factory=list)
    tensorboard: str | None = None


def default_reported_csv() -> Path:
    """results/reported.csv of the source checkout, else of the working directory."""
    repo = Path(__file__).resolve().parents[2] / "results" / "reported.csv"
    return repo if repo.is_file() else Path("results") / "reported.csv"


_RANK = {FINISHED: 0, DIVERGED: 1}


def select_members(members: list[Member], experiment: str) -> tuple[list[Member], list[str]]:
    """Members of `experiment`, one per (data set, group, seed); notes on what was set aside.

    Of duplicates, a finished member beats a diverged one, which beats an unfinished one;
    two finished duplicates are an error (which one counts is the user's decision).
    """
    notes = []
    others = sorted({m.experiment for m in members if m.experiment != experiment})
    if others:
        count = sum(m.experiment != experiment for m in members)
        notes.append(f"ignored {count} member(s) of other experiments ({', '.join(others)})")
    chosen: dict[tuple, Member] = {}
    for m in (m for m in members if m.experiment == experiment):
        key = (m.dataset, m.group, m.seed)
        held = chosen.get(key)
        if held is None:
            chosen[key] = m
            continue
        if held.status == m.status == FINISHED:
            raise ElureproError(
                f"two finished members for group {m.group!r}, seed {m.seed} "
                f"({m.dataset}): {held.folder} and {m.folder}; move one out of the runs "
                "folder or pass a narrower folder"
            )
        keep, drop = sorted([held, m], key=lambda x: _RANK.get(x.status, 2))
        chosen[key] = keep
        notes.append(
            f"duplicate: {drop.id} ({drop.status}) in {drop.folder} is set aside in favour "
            f"of the {keep.status} member in {keep.folder}"
        )
    return list(chosen.values()), notes


def cut_unfinished(members: list[Member]) -> str | None:
    """--partial: every member cut at the last step all unfinished ones reached, and counted as
    finished there. Returns the sentence the report opens with."""
    unfinished = [m for m in members if m.status == UNFINISHED and m.records]
    if not unfinished:
        return None
    cut = min(max(r["step"] for r in m.records) for m in unfinished)
    epoch = None
    for m in members:
        m.records = [r for r in m.records if r["step"] <= cut]
        epoch = next((r.get("epoch") for r in reversed(m.records) if "epoch" in r), epoch)
        if m.status == UNFINISHED:
            # The population folder's provenance.json (written when training starts) stands in
            # for the summary's hardware, software and data fields.
            prov_path = m.folder.parent.parent / "provenance.json"
            prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
            m.summary = {**prov, "status": FINISHED, "final": {}, "partial_at_step": cut}
    return (
        f"**PARTIAL ANALYSIS (`--partial`)**: {len(unfinished)} member(s) had not finished; every "
        f"member is cut at step {cut} (epoch {epoch}) and its values there are reported as final. "
        "This is not the end of the protocol."
    )


def analyze(
    experiment: str,
    runs_dir: str | Path,
    out_dir: str | Path,
    reported_csv: str | Path | None = None,
    tensorboard: bool = True,
    partial: bool = False,
) -> AnalysisResult:
    """Analyze the runs of one experiment and write report.md, CSV tables and figures."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(
            f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}"
        )
    spec = EXPERIMENTS[experiment]
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    reported = load_reported(reported_csv or default_reported_csv())
    everything = collect_members(runs_dir)
    if not everything:
        raise ElureproError(f"no member folders (with a member.json) under {runs_dir}")
    members, notes = select_members(everything, experiment)
    if not members:
        found = sorted({m.experiment for m in everything})
        raise ElureproError(
            f"no members of experiment {experiment} under {runs_dir} (found: {', '.join(found)})"
        )
    datasets = sorted({m.dataset for m in members})
    if spec.single_dataset and len(datasets) > 1:
        raise ElureproError(
            f"the {experiment} members under {runs_dir} use several data sets "
            f"({', '.join(datasets)}); analyze each population folder separately"
        )

    cut_note = cut_unfinished(members) if partial else None
    a = Analysis(experiment, runs_dir, out_dir, members, reported, notes)
    w = ReportWriter(out_dir, f"{experiment}: {spec.title}")
    if cut_note:
        w.text(cut_note)
    with paper_style():
        attention = status_section(a, w, spec.expected)
        spec.report(a, w)
    tb_note = None
    if tensorboard:
        tb_note = tb_export.export(runs_dir, members, w.figures, experiment)
        w.section("TensorBoard")
        w.text(tb_note)
    report = w.write()
    return AnalysisResult(report, w.tables, w.figure_files, attention, tb_note)
