"""Markdown and CSV tables, the paper's reported numbers, and the provenance line."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from elurepro.analysis.collect import MemberRun
from elurepro.errors import ElureproError

REPORTED_COLUMNS = ("experiment", "quantity", "configuration", "value", "unit", "note")

_DATASET_NAMES = {
    "mnist": "MNIST",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "tiny-imagenet-10": "Tiny ImageNet (10 classes)",
}


# How each reduced budget differs from the paper's protocol (README, "Budgets").
BUDGET_MEANING = {
    "short": "1/10 of the paper's training length",
    "demo": "1/100 of the paper's training length",
    "smoke": "a few steps on small subsets, a pipeline check",
}

T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column of a table built from records: a header, a CSV header and how to get the
    value (CSV) and its text (Markdown) from a record. A new metric is one more Column."""

    header: str
    csv: str
    value: Callable[[T], Any]
    text: Callable[[T], Any] | None = None
    markdown: bool = True
    in_csv: bool = True

    def cell(self, record: T) -> Any:
        return (self.text or self.value)(record)


def record_rows(
    records: Sequence[T], columns: Sequence[Column[T]]
) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """(Markdown headers, Markdown rows, CSV headers, CSV rows) of `records`."""
    md = [c for c in columns if c.markdown]
    cs = [c for c in columns if c.in_csv]
    return (
        [c.header for c in md],
        [[c.cell(r) for c in md] for r in records],
        [c.csv for c in cs],
        [[c.value(r) for c in cs] for r in records],
    )


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


def _data(member: MemberRun) -> dict[str, Any]:
    return member.data


def dataset_label(name: str, official: bool | None, description: str | None = None) -> str:
    """Human name of a data set; a non-official copy says so, with the trainer's description
    when it gave one (the only non-official CIFAR-10 of old runs was the lossy copy)."""
    pretty = _DATASET_NAMES.get(name, name)
    if official is False:
        if description:
            return f"{description} (not the official {pretty})"
        return "lossy CIFAR-10 copy" if name == "cifar10" else f"{pretty} (not the official data)"
    return pretty


def member_data_label(member: MemberRun) -> str:
    data = member.data
    return dataset_label(
        str(data.get("name", member.dataset)), data.get("official"), data.get("description")
    )


def data_label(members: Sequence[MemberRun]) -> str:
    """Data set label for titles, from member.json, the summaries or provenance.json."""
    labels = []
    for m in members:
        label = member_data_label(m)
        if label not in labels:
            labels.append(label)
    return ", ".join(labels) if labels else "no data"


def budget_label(members: Sequence[MemberRun]) -> str:
    budgets = sorted({m.budget or "unknown" for m in members})
    return "budget=" + "/".join(budgets) if budgets else "budget=?"


def _counted(values: Iterable[str]) -> str:
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{value} ({n} members)" for value, n in counts.most_common())


def provenance(members: Sequence[MemberRun]) -> str:
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
        datas.append(f"{member_data_label(m)} ({kind}{fp})")
    return (
        f"Provenance: {budget_label(members)}; "
        f"device: {_counted(str(s.get('device', '?')) for s in summaries)}; "
        f"torch {_counted(str(s.get('torch', '?')) for s in summaries)}; "
        f"data: {_counted(datas)}; "
        f"git commit {_counted(str(s.get('git_commit', '?'))[:12] for s in summaries)} "
        f"(read from {len(summarized)} run summaries)."
    )


def reduced_precision(members: Sequence[MemberRun]) -> list[str]:
    """The arithmetic options other than fp32 that these members were trained with."""
    return sorted(
        {
            key
            for m in members
            for key in ("bf16", "tf32")
            if (((m.summary or {}).get("config") or {}).get("execution") or {}).get(key)
        }
    )


def not_comparable_reason(
    members: Sequence[MemberRun], paper_dataset: str | Sequence[str] | None
) -> str | None:
    """Why these members' numbers cannot be set against the paper's, or None when they can.

    Not comparable: another data set than the paper's, data whose checksums are not the
    official release's (named, with the trainer's description), reduced precision (bf16, tf32),
    or any budget but `paper`.
    """
    reasons = []
    datasets = sorted({m.dataset for m in members})
    papers = [paper_dataset] if isinstance(paper_dataset, str) else list(paper_dataset or [])
    others = [d for d in datasets if papers and d not in papers]
    if others:
        reasons.append(
            f"the paper's numbers are for {', '.join(dataset_label(d, True) for d in papers)}, "
            f"these runs used {', '.join(dataset_label(d, None) for d in others)}"
        )
    unofficial: dict[str, MemberRun] = {}
    for m in members:
        if m.official is False:
            unofficial.setdefault(m.dataset, m)
    if unofficial:
        described = []
        for d in sorted(unofficial):
            m = unofficial[d]
            why = m.data.get("description")
            if why:
                described.append(f"{_DATASET_NAMES.get(d, d)}: {why}")
            else:
                described.append(
                    f"{member_data_label(m)}: its files' checksums are not the official release's"
                )
        reasons.append("made on non-official data (" + "; ".join(described) + ")")
    changed = reduced_precision(members)
    if changed:
        reasons.append(
            f"trained with execution.{'/'.join(changed)}, which changes the arithmetic "
            "(the paper's protocol is fp32)"
        )
    budgets = sorted({m.budget or "unknown" for m in members if m.budget != "paper"})
    if budgets:
        meaning = ", ".join(
            f"{b}: {BUDGET_MEANING[b]}" if b in BUDGET_MEANING else b for b in budgets
        )
        reasons.append(f"reduced budget ({meaning}), not the paper's")
    return "; ".join(reasons) or None
