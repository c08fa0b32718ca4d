"""Per experiment and sweep: collect the members, write report.md, tables and figures.

A runs folder at any level (``runs/<exp>``, ``runs/<exp>/<data>-<budget>``, one sweep folder)
may hold several sweeps (budgets, data fingerprints, configurations); each gets its own report,
in ``<out>`` when there is one and in ``<out>/<sweep name>/`` when there are several.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from elurepro.analysis import tb_export
from elurepro.analysis.collect import UNFINISHED, MemberRun, collect_members
from elurepro.analysis.context import (
    PAPER_UNITS,
    Analysis,
    ReportWriter,
    baseline_label,
    status_section,
)
from elurepro.analysis.format import markdown_table
from elurepro.analysis.plotting import paper_style
from elurepro.analysis.reported import default_reported_csv, load_reported
from elurepro.analysis.reports import (
    cifar100_11layer,
    cifar_18layer,
    generic,
    imagenet_15layer_spp,
    mnist_autoencoder,
    mnist_meanact,
)
from elurepro.analysis.sweeps import Sweep, partition, select_members
from elurepro.analysis.table import RunTable, from_members
from elurepro.errors import ElureproError


@dataclass(frozen=True)
class Experiment:
    title: str
    report: Callable[[Analysis, ReportWriter], None]
    expected: tuple[str, ...] = ()  # configurations the paper has; absent ones are reported
    single_dataset: bool = True
    paper_datasets: tuple[str, ...] = ()  # the data the paper's numbers are for
    in_paper: bool = True


EXPERIMENTS: dict[str, Experiment] = {
    "mnist_meanact": Experiment(
        "Mean activations and learning speed on MNIST (Fig. 2, Appendix C)",
        mnist_meanact.report,
        ("elu", "lrelu", "relu"),
        paper_datasets=("mnist",),
    ),
    "mnist_autoencoder": Experiment(
        "Deep autoencoder on MNIST (Fig. 3)", mnist_autoencoder.report, paper_datasets=("mnist",)
    ),
    "cifar100_11layer": Experiment(
        "11-layer CNN, activations with and without BN (Fig. 4, Fig. 5, §6 tests)",
        cifar100_11layer.report,
        (*PAPER_UNITS, *(f"{u}+bn" for u in PAPER_UNITS)),
        paper_datasets=("cifar100",),
    ),
    "cifar_18layer": Experiment(
        "18-layer ELU CNN on CIFAR-10 and CIFAR-100 (Table 1)",
        cifar_18layer.report,
        single_dataset=False,
        paper_datasets=("cifar10", "cifar100"),
    ),
    "imagenet_15layer_spp": Experiment(
        "15-layer SPP network on ImageNet, ELU vs ReLU (Fig. 6)",
        imagenet_15layer_spp.report,
        ("elu", "relu"),
        paper_datasets=("imagenet",),
    ),
}


def experiment_spec(experiment: str) -> Experiment:
    """The paper experiment's report, or the generic one for an experiment a user added."""
    if experiment in EXPERIMENTS:
        return EXPERIMENTS[experiment]
    return Experiment(
        f"{experiment} (an experiment the paper does not have)", generic.report, in_paper=False
    )


@dataclass
class AnalysisResult:
    """Where the analysis wrote one sweep's output, and what the user should look at."""

    report: Path
    tables: list[Path]
    figures: list[Path]
    attention: list[str] = field(default_factory=list)
    tensorboard: str | None = None
    sweep: str = ""  # one line: experiment, data, budget, fingerprint, configuration
    not_comparable: str | None = None
    figure_objects: dict[str, Figure] = field(default_factory=dict, repr=False)


def cut_unfinished(members: list[MemberRun]) -> tuple[RunTable | None, str | None]:
    """--partial: every member cut at the last step all unfinished ones reached, and counted as
    finished there. Returns the members' table so cut (None: nothing to cut) and the sentence
    the report opens with."""
    table = from_members(members)
    last = [table.last_step(m) for m in members if m.status == UNFINISHED]
    last = [step for step in last if step is not None]
    if not last:
        return None, None
    cut = min(last)
    epoch = None
    for m in members:
        # The epoch of the member's last line at or before the cut; the last member's wins.
        rows = table.rows[(table.rows["member"] == table.index(m)) & (table.rows["step"] <= cut)]
        rows = rows[~np.isnan(rows["epoch"])]
        if len(rows):
            epoch = float(rows["epoch"][np.argmax(rows["line"])])
    for m in members:
        if m.status == UNFINISHED:
            # provenance.json (the member folder's in the new layout, the population folder's in
            # the old one; written when training starts) stands in for the summary's hardware,
            # software and data fields.
            prov = dict(m.provenance or {})
            m.summary = {**prov, "status": "finished", "final": {}, "partial_at_step": cut}
    # Built again: a member's status and finals are its summary's, now the stand-in above.
    return from_members(members).until(cut), (
        f"**PARTIAL ANALYSIS (`--partial`)**: {len(last)} member(s) had not finished; every "
        f"member is cut at step {cut} (epoch {epoch}) and its values there are reported as final. "
        "This is not the end of the protocol."
    )


def banner(a: Analysis) -> str:
    """The statement at the top of every report: comparable with the paper's numbers or not."""
    reason = a.not_comparable
    if reason is None:
        return f"**Comparable with the paper:** budget=paper on the official data ({a.context()})."
    return (
        f"**NOT COMPARABLE WITH THE PAPER'S NUMBERS.** {reason[0].upper() + reason[1:]}. "
        "Every number, figure and answer to the paper's claims below is about these runs "
        "only; where the paper's numbers are shown, they are for reference."
    )


def _experiment_members(experiment: str, runs_dir: Path) -> tuple[list[MemberRun], list[str]]:
    everything = collect_members(runs_dir)
    if not everything:
        raise ElureproError(f"no member folders (with a member.json) under {runs_dir}")
    members = [m for m in everything if m.experiment == experiment]
    notes = []
    others = sorted({m.experiment for m in everything if m.experiment != experiment})
    if others:
        count = len(everything) - len(members)
        notes.append(f"ignored {count} member(s) of other experiments ({', '.join(others)})")
    if not members:
        found = sorted({m.experiment for m in everything})
        raise ElureproError(
            f"no members of experiment {experiment} under {runs_dir} (found: {', '.join(found)})"
        )
    return members, notes


def find_sweeps(experiment: str, runs_dir: str | Path) -> tuple[Experiment, list[Sweep], list[str]]:
    """The sweeps of `experiment` under `runs_dir` and notes on what was left out."""
    spec = experiment_spec(experiment)
    members, notes = _experiment_members(experiment, Path(runs_dir))
    return spec, partition(members, multi_dataset=not spec.single_dataset), notes


def analyze_all(
    experiment: str,
    runs_dir: str | Path,
    out_dir: str | Path,
    reported_csv: str | Path | None = None,
    tensorboard: bool = True,
    partial: bool = False,
    baseline: str = "elu",
    sweeps: tuple[Experiment, list[Sweep], list[str]] | None = None,
) -> list[AnalysisResult]:
    """One report per sweep of `experiment` under `runs_dir` (see the module docstring)."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    reported = load_reported(reported_csv or default_reported_csv())
    spec, found, notes = sweeps or find_sweeps(experiment, runs_dir)
    several = len(found) > 1
    if several:
        notes = notes + [
            f"{runs_dir} holds {len(found)} sweeps (budgets, data or configurations); each has "
            "its own report, and no member of one stands in for a member of another"
        ]
    results = []
    for sweep in found:
        out = out_dir / sweep.name if several else out_dir
        results.append(
            _analyze_sweep(
                spec,
                experiment,
                sweep,
                runs_dir,
                out,
                reported,
                notes,
                tensorboard,
                partial,
                baseline_label(baseline),
                several,
            )
        )
    if several:
        _write_index(out_dir, experiment, runs_dir, found, results)
    return results


def analyze(
    experiment: str,
    runs_dir: str | Path,
    out_dir: str | Path,
    reported_csv: str | Path | None = None,
    tensorboard: bool = True,
    partial: bool = False,
    baseline: str = "elu",
) -> AnalysisResult:
    """The report of the one sweep of `experiment` under `runs_dir`; several sweeps raise
    (use `analyze_all`, as the command line does)."""
    found = find_sweeps(experiment, runs_dir)
    if len(found[1]) > 1:
        raise ElureproError(
            f"{runs_dir} holds {len(found[1])} sweeps of {experiment} ("
            + "; ".join(s.label for s in found[1])
            + "); analyze_all writes one report per sweep"
        )
    (result,) = analyze_all(
        experiment, runs_dir, out_dir, reported_csv, tensorboard, partial, baseline, found
    )
    return result


def _analyze_sweep(
    spec: Experiment,
    experiment: str,
    sweep: Sweep,
    runs_dir: Path,
    out_dir: Path,
    reported: list,
    notes: Sequence[str],
    tensorboard: bool,
    partial: bool,
    baseline: str,
    several: bool,
) -> AnalysisResult:
    members, dup_notes = select_members(sweep.members)
    cut, cut_note = cut_unfinished(members) if partial else (None, None)
    a = Analysis(
        experiment,
        members,
        reported,
        list(notes) + dup_notes,
        baseline=baseline,
        paper_datasets=spec.paper_datasets,
        in_paper=spec.in_paper,
        runs=cut,
    )
    w = ReportWriter(out_dir, f"{experiment}: {spec.title}", banner=banner(a))
    w.text(f"Sweep: {sweep.label}.")
    if cut_note:
        w.text(cut_note)
    with paper_style(), warnings.catch_warnings():
        # Empty panels (a unit without a metric) are fine; their legends need not say so.
        warnings.filterwarnings("ignore", message="No artists with labels found")
        attention = status_section(a, w, spec.expected)
        spec.report(a, w)
    tb_note = None
    if tensorboard:
        tb_note = tb_export.export(runs_dir, members, w.figures, experiment, a)
        w.section("TensorBoard")
        w.text(tb_note)
    report = w.write()
    return AnalysisResult(
        report,
        w.tables,
        w.figure_files,
        attention,
        tb_note,
        sweep.label,
        a.not_comparable,
        dict(w.figures),
    )


def _write_index(
    out_dir: Path,
    experiment: str,
    runs_dir: Path,
    sweeps: Sequence[Sweep],
    results: Sequence[AnalysisResult],
) -> Path:
    rows = []
    for sweep, result in zip(sweeps, results, strict=True):
        rows.append(
            [
                f"[{sweep.name}]({sweep.name}/report.md)",
                "/".join(sweep.budgets),
                ", ".join(f"{d} (data {fp})" for d, fp in sweep.fingerprints.items()),
                "/".join(sweep.config_tags) or "—",
                len(sweep.members),
                "comparable"
                if result.not_comparable is None
                else "NOT comparable: " + result.not_comparable,
            ]
        )
    text = "\n".join(
        [
            f"# {experiment}: one report per sweep",
            "",
            f"{runs_dir} holds several sweeps; a report never mixes budgets, data "
            "fingerprints or configurations.",
            "",
            markdown_table(["report", "budget", "data", "configuration", "members", "paper"], rows),
            "",
        ]
    )
    path = out_dir / "index.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
