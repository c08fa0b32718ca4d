"""Fig. 3's runs: counts, final reconstruction errors, divergence epochs (final_values.csv)."""

from __future__ import annotations

from dataclasses import dataclass

from elurepro.analysis.collect import DIVERGED, FINISHED, MemberRun
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.format import Column
from elurepro.analysis.lr_sweep import activation, configs_at, divergence_epochs, lr_text
from elurepro.analysis.stats import Describe, describe


def write(a: Analysis, w: ReportWriter, lrs: list[float | None]) -> None:
    """Per configuration and learning rate: counts, final errors, divergence epochs."""
    rows = [
        _row(a, config, members, activation(members), lr, divergence_epochs(a, members))
        for lr in lrs
        for config, members in configs_at(a, lr).items()
    ]
    w.section("Final reconstruction error (finished members, mean ± std)")
    w.records(rows, AE_COLUMNS, csv_name="final_values.csv")


@dataclass
class AutoencoderRow:
    """One configuration at one learning rate: counts, final errors, divergence epochs."""

    unit: str
    lr: float | None
    finished: int
    diverged: int
    unfinished: int
    train: Describe
    test: Describe
    diverged_at: str


AE_COLUMNS: list[Column[AutoencoderRow]] = [
    Column("activation", "activation", lambda r: r.unit),
    Column("lr", "lr", lambda r: lr_text(r.lr)),
    Column("finished", "finished", lambda r: r.finished),
    Column("diverged", "diverged", lambda r: r.diverged),
    Column("unfinished", "unfinished", lambda r: r.unfinished),
    Column("train recon error", "train_mean", lambda r: r.train.mean, lambda r: r.train.text(2)),
    Column("", "train_std", lambda r: r.train.std, markdown=False),
    Column("test recon error", "test_mean", lambda r: r.test.mean, lambda r: r.test.text(2)),
    Column("", "test_std", lambda r: r.test.std, markdown=False),
    Column("diverged at epoch", "diverged_at_epoch", lambda r: r.diverged_at),
]


def _row(
    a: Analysis, config: str, members: list[MemberRun], unit: str, lr: float | None, epochs: list
) -> AutoencoderRow:
    count = {s: sum(m.status == s for m in members) for s in (FINISHED, DIVERGED, "unfinished")}
    return AutoencoderRow(
        unit=unit,
        lr=lr,
        finished=count[FINISHED],
        diverged=count[DIVERGED],
        unfinished=count["unfinished"],
        train=describe(list(a.finals(config, "train/recon_error").values())),
        test=describe(list(a.finals(config, "test/recon_error").values())),
        diverged_at=", ".join(f"{e:.1f}" for e in epochs if e is not None) or "—",
    )
