"""Markdown and CSV tables, the paper's reported numbers, and the provenance line."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elurepro.analysis.collect import Member
from elurepro.errors import ElureproError

REPORTED_COLUMNS = ("experiment", "quantity", "configuration", "value", "unit", "note")

_DATASET_NAMES = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "tiny-imagenet-10": "Tiny ImageNet (10 classes)",
}


@dataclass(frozen=True)
class Reported:
    """One number the paper reports (a row of results/reported.csv)."""

    experiment: str
    quantity: str
    configuration: str
    value: float
    unit: str
    note: str


def load_reported(path: str | Path) -> list[Reported]:
    """Read results/reported.csv; a missing file or a bad row raises an ElureproError."""
    path = Path(path)
    if not path.is_file():
        raise ElureproError(f"{path} is missing; it holds the paper's numbers (pass --reported)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != REPORTED_COLUMNS:
            raise ElureproError(f"{path} must have the columns {', '.join(REPORTED_COLUMNS)}")
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                raise ElureproError(
                    f"{path} line {line}: value {row['value']!r} is not a number"
                ) from None
            rows.append(Reported(**{**row, "value": value}))
    return rows


def find_reported(
    rows: Iterable[Reported], experiment: str, quantity: str, configuration: str
) -> Reported | None:
    for row in rows:
        if (row.experiment, row.quantity, row.configuration) == (
            experiment,
            quantity,
            configuration,
        ):
            return row
    return None


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table; missing or non-finite values become '—' / 'nan'."""
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return str(value)
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "—"
    return f"{p:.2e}" if p < 1e-4 else f"{p:.5f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells are str()-ed and '|' escaped."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(path: str | Path, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(headers)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def _data(member: Member) -> dict[str, Any]:
    return dict((member.summary or {}).get("data") or {})


def dataset_label(name: str, official: bool | None) -> str:
    """Human name of a data set; a non-official copy says so (the lossy CIFAR-10 copy)."""
    pretty = _DATASET_NAMES.get(name, name)
    if official is False:
        return "lossy CIFAR-10 copy" if name == "cifar10" else f"{pretty} (not the official data)"
    return pretty


def data_label(members: Sequence[Member]) -> str:
    """Data set label for titles, from the summaries (member.json when none has one)."""
    labels = []
    for m in members:
        data = _data(m)
        label = dataset_label(str(data.get("name", m.dataset)), data.get("official"))
        if label not in labels:
            labels.append(label)
    return ", ".join(labels) if labels else "no data"


def budget_label(members: Sequence[Member]) -> str:
    budgets = sorted({m.budget or "unknown" for m in members})
    return "budget=" + "/".join(budgets) if budgets else "budget=?"


def _counted(values: Iterable[str]) -> str:
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{value} ({n} members)" for value, n in counts.most_common())


def provenance(members: Sequence[Member]) -> str:
    """One line: budget, device, torch, data set (official or not), git commit."""
    summarized = [m for m in members if m.summary is not None]
    if not summarized:
        return f"Provenance: {budget_label(members)}; no member has a summary.json yet."
    summaries = [m.summary or {} for m in summarized]
    datas = []
    for m in summarized:
        data = _data(m)
        official = data.get("official")
        kind = {True: "official", False: "NOT official"}.get(official, "official: unknown")
        fingerprint = data.get("fingerprint")
        fp = f", fingerprint {str(fingerprint)[:12]}" if fingerprint else ""
        label = dataset_label(str(data.get("name", m.dataset)), official)
        datas.append(f"{label} ({kind}{fp})")
    return (
        f"Provenance: {budget_label(members)}; "
        f"device: {_counted(str(s.get('device', '?')) for s in summaries)}; "
        f"torch {_counted(str(s.get('torch', '?')) for s in summaries)}; "
        f"data: {_counted(datas)}; "
        f"git commit {_counted(str(s.get('git_commit', '?'))[:12] for s in summaries)} "
        f"(read from {len(summarized)} run summaries)."
    )


def not_comparable_reason(members: Sequence[Member], paper_dataset: str | None) -> str | None:
    """Why our numbers cannot be set against the paper's, or None when they can."""
    reasons = []
    datasets = sorted({m.dataset for m in members})
    if paper_dataset is not None and datasets != [paper_dataset]:
        reasons.append(
            f"the paper's numbers are for {dataset_label(paper_dataset, True)}, "
            f"these runs used {', '.join(dataset_label(d, None) for d in datasets)}"
        )
    unofficial = sorted({m.dataset for m in members if _data(m).get("official") is False})
    if unofficial:
        reasons.append(
            "made on non-official data ("
            + ", ".join(dataset_label(d, False) for d in unofficial)
            + ")"
        )
    budgets = sorted({m.budget or "unknown" for m in members if m.budget != "paper"})
    if budgets:
        reasons.append(f"reduced budget ({', '.join(budgets)}), not the paper's")
    return "; ".join(reasons) or None
