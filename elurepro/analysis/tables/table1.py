"""Table 1: the paper's networks' test errors beside the 18-layer network's (table1.csv)."""

from __future__ import annotations

from elurepro.analysis.collect import FINISHED
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.plotting import unit_name
from elurepro.analysis.provenance import dataset_label, not_comparable_reason
from elurepro.analysis.reported import find_reported
from elurepro.analysis.schedule import schedule_line
from elurepro.analysis.stats import Describe, describe


def _network_name(config: str) -> str:
    """'ELU-Network (ours)' for the paper's network; '<UNIT>[+BN]-Network (ours)' for others."""
    unit, bn = config.removesuffix("+bn"), config.endswith("+bn")
    return f"{unit_name(unit)}{'+BN' if bn else ''}-Network (ours)"


def write(a: Analysis, w: ReportWriter, datasets: list[str], groups: list[str]) -> None:
    """Table 1: the paper's networks' test errors beside ours, one row per configuration."""
    reasons = {
        d: not_comparable_reason([m for m in a.members if m.dataset == d], d) for d in datasets
    }
    # Our rows: one per configuration (unit, BN) present, the paper's ELU network first.
    ours: dict[tuple[str, str], Describe] = {}
    for group in groups:
        for d in datasets:
            members = [
                m for m in a.members if m.dataset == d and m.group == group and m.status == FINISHED
            ]
            values = [a.table().final(m, "test/error") for m in members]
            ours[(group, d)] = describe([v for v in values if v is not None])

    columns = ["cifar10", "cifar100"]
    networks: list[str] = []
    for row in a.reported:
        if row.experiment == a.experiment and row.configuration not in networks:
            networks.append(row.configuration)
    rows, csv_rows = [], []
    for network in networks:
        cells, notes = [], {}
        for d in columns:
            r = find_reported(a.reported, a.experiment, f"test_error_{d}", network)
            cells.append(f"{r.value:.2f}" if r else "—")
            if r and r.note:
                notes[dataset_label(d, True)] = r.note
            csv_rows.append(
                [network, d, "paper", r.value if r else None, None, None, r.note if r else ""]
            )
        if len(set(notes.values())) == 1:
            note = next(iter(notes.values()))
        else:
            note = "; ".join(f"{d}: {text}" for d, text in notes.items())
        rows.append([network] + cells + [note])
    paper_elu = {
        d: find_reported(a.reported, a.experiment, f"test_error_{d}", "ELU-Network")
        for d in columns
    }
    for group in groups:
        name = _network_name(group)
        cells = []
        for d in columns:
            stats = ours.get((group, d))
            cells.append(stats.text(2) if stats and stats.n else "not run")
            if stats is None:
                continue
            paper = paper_elu[d] if group == "elu" else None
            diff = None
            if stats.n and paper is not None and not reasons[d]:
                diff = stats.mean - paper.value
            csv_rows.append([name, d, "ours", stats.mean, stats.std, diff, reasons.get(d) or ""])
        rows.append([f"**{name}**"] + cells + [a.context()])
    diff_cells = []
    for d in columns:
        stats, paper = ours.get(("elu", d)), paper_elu[d]
        if stats is None or not stats.n or paper is None:
            diff_cells.append("—")
        elif reasons.get(d):
            diff_cells.append("not comparable")
        else:
            diff_cells.append(f"{stats.mean - paper.value:+.2f}")
    rows.append(
        ["ours − paper ELU-Network (pp)"]
        + diff_cells
        + [
            "; ".join(f"{dataset_label(d, None)}: {reasons[d]}" for d in columns if reasons.get(d))
            or "comparable"
        ]
    )
    w.section("Table 1: test error (%)")
    w.text(schedule_line(a.members))
    w.table(["network", "CIFAR-10", "CIFAR-100", "note"], rows)
    w.csv(
        "table1.csv",
        ["network", "dataset", "source", "test_error", "std", "difference", "note"],
        csv_rows,
    )
    for d in columns:
        if reasons.get(d):
            w.text(f"**{dataset_label(d, None)}: not comparable with the paper:** {reasons[d]}.")
    w.text(
        "Paper values marked [VERIFY] come from recollection (docs/protocol.md §9). "
        "(CSV: `table1.csv`)"
    )
