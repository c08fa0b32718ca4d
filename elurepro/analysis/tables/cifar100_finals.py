"""Figs. 4-5's runs: final test error and loss beside the paper's numbers (final_values.csv)."""

from __future__ import annotations

from dataclasses import dataclass

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.format import Column, fmt
from elurepro.analysis.headline import HEADLINES, headline_metric, headline_values
from elurepro.analysis.reported import Reported, find_reported
from elurepro.analysis.stats import Describe, describe


@dataclass
class FinalRow:
    """One configuration's final values beside the paper's number."""

    config: str
    error: Describe
    loss: Describe
    paper: Reported | None
    paper_std: Reported | None
    difference: float | None
    reason: str | None

    @property
    def paper_text(self) -> str:
        if self.paper is None:
            return "—"
        text = f"{self.paper.value:.2f}"
        return text + (f" ± {self.paper_std.value:.2f}" if self.paper_std else "")

    @property
    def difference_text(self) -> str:
        if self.paper is None:
            return "— (no paper number)"
        if self.reason is not None:
            return "not comparable"
        return fmt(self.difference) if self.difference is not None else "—"


FINAL_COLUMNS: list[Column[FinalRow]] = [
    Column("configuration", "configuration", lambda r: r.config),
    Column("n", "n", lambda r: r.error.n),
    Column("test error (%)", "test_error_mean", lambda r: r.error.mean, lambda r: r.error.text(2)),
    Column("", "test_error_std", lambda r: r.error.std, markdown=False),
    Column("training loss", "train_loss_mean", lambda r: r.loss.mean, lambda r: r.loss.text(4)),
    Column("", "train_loss_std", lambda r: r.loss.std, markdown=False),
    Column(
        "paper test error (%)",
        "paper_test_error",
        lambda r: r.paper.value if r.paper else None,
        lambda r: r.paper_text,
    ),
    Column(
        "",
        "paper_test_error_std",
        lambda r: r.paper_std.value if r.paper_std else None,
        markdown=False,
    ),
    Column("ours − paper (pp)", "difference", lambda r: r.difference, lambda r: r.difference_text),
    Column("", "not_comparable_because", lambda r: r.reason or "", markdown=False),
]


def write(a: Analysis, w: ReportWriter) -> None:
    reason = a.not_comparable
    error_h, loss_h = HEADLINES[a.experiment]
    rows = []
    for config in a.configs():
        # Means and std as logged; only the paired differences are taken in integer counts.
        metric = headline_metric(a, error_h) or "test/error"
        err = describe(list(headline_values(a, config, error_h, metric).values()))
        loss = describe(list(a.finals(config, loss_h.metrics[0]).values()))
        paper = find_reported(a.reported, a.experiment, "test_error", config)
        paper_std = find_reported(a.reported, a.experiment, "test_error_std", config)
        diff = err.mean - paper.value if paper and reason is None and err.n else None
        rows.append(FinalRow(config, err, loss, paper, paper_std, diff, reason))
    w.section("Final test error (finished members, mean ± std)")
    w.records(rows, FINAL_COLUMNS, csv_name="final_values.csv")
    if reason is not None:
        w.text(
            f"**Not comparable with the paper's numbers:** {reason}. "
            "The paper's column is shown for reference only; no differences are computed."
        )
    else:
        w.text("The paper's numbers are CIFAR-100, no BN, 10 runs (docs/protocol.md §5.3).")
