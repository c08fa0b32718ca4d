"""Markdown and CSV tables: columns of records, number formats, the writers."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

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

    def cell(self, record: T) -> Any:
        return (self.text or self.value)(record)


def record_rows(
    records: Sequence[T], columns: Sequence[Column[T]]
) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """(Markdown headers, Markdown rows, CSV headers, CSV rows) of `records`."""
    md = [c for c in columns if c.markdown]
    return (
        [c.header for c in md],
        [[c.cell(r) for c in md] for r in records],
        [c.csv for c in columns],
        [[c.value(r) for c in columns] for r in records],
    )


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
