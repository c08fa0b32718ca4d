"""The paper's numbers: results/reported.csv, read and looked up."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from elurepro.errors import ElureproError


def default_reported_csv() -> Path:
    """results/reported.csv of the source checkout, else of the working directory."""
    repo = Path(__file__).resolve().parents[2] / "results" / "reported.csv"
    return repo if repo.is_file() else Path("results") / "reported.csv"


REPORTED_COLUMNS = ("experiment", "quantity", "configuration", "value", "unit", "note")


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
