"""§6: the paper's own Wilcoxon signed-rank tests beside its p-values (wilcoxon.csv)."""

from __future__ import annotations

from elurepro.analysis.context import PAPER_UNITS, Analysis, ReportWriter
from elurepro.analysis.format import Column
from elurepro.analysis.headline import (
    HEADLINES,
    UnitComparison,
    comparison_columns,
    headline_metric,
    pair,
)
from elurepro.analysis.reported import find_reported
from elurepro.analysis.stats import min_p_note

# docs/protocol.md §6: ELU against each other unit without BN, ELU against ReLU with BN, and
# every unit with BN against itself without. These are the rows set beside the paper's p < 0.001.
PAPER_PAIRS = [("elu", other) for other in ("srelu", "relu", "lrelu")]
PAPER_PAIRS.append(("elu", "relu+bn"))
PAPER_PAIRS += [(f"{unit}+bn", unit) for unit in PAPER_UNITS]


def cifar100_comparisons(a: Analysis) -> list[UnitComparison]:
    """Every paired comparison of docs/protocol.md §6, on final test error and training loss."""
    out = []
    for h in HEADLINES[a.experiment]:
        metric = headline_metric(a, h) or h.metrics[0]
        for first, second in PAPER_PAIRS:
            out.append(pair(a, first, second, h, metric, "paper §6"))
    return out


def write(a: Analysis, w: ReportWriter) -> None:
    comparisons = cifar100_comparisons(a)

    def paper(r: UnitComparison) -> float | None:
        row = find_reported(a.reported, a.experiment, "wilcoxon_p", r.result.label)
        return row.value if row else None

    columns = comparison_columns(paper=True)
    at = next(i for i, c in enumerate(columns) if c.csv == "note")
    columns.insert(
        at,
        Column(
            "paper",
            "paper_p_upper_bound",
            paper,
            lambda r: f"p < {paper(r):g}" if paper(r) is not None else "—",
        ),
    )
    w.section("The paper's Wilcoxon signed-rank tests (docs/protocol.md §6)")
    w.text(
        "The paper's own comparisons, in its direction (A = ELU, or a unit with BN): "
        "one-sided `scipy.stats.wilcoxon(A, B, alternative='less')`, i.e. A's final value is "
        "lower (better) than B's; two-sided alongside. 'A better' counts the pairs where A's "
        "value is lower. Finished members only; methods as in the section above."
    )
    w.records(comparisons, columns, csv_name="wilcoxon.csv")
    reason = a.not_comparable
    if reason:
        w.text(f"The paper's p-values are for CIFAR-100 at its budget; here: {reason}.")
    ns = sorted({c.result.n_nonzero for c in comparisons if c.result.n_nonzero > 0})
    w.text(*(min_p_note(n) for n in ns) if ns else (min_p_note(0),))
