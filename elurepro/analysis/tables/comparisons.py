"""Every unit against the baseline, paired by seed: the comparisons table (comparisons.csv)."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.headline import UnitComparison, comparison_columns, unit_comparisons
from elurepro.analysis.stats import min_p_note

METHOD_NOTE = (
    "Paired by seed (run r of both configurations shares initial weights and data order). "
    "`scipy.stats.wilcoxon` on the differences A − B with zero differences removed first "
    "(Wilcoxon's method; 'ties (A = B)' counts them): 'exact' is scipy's exact null "
    "distribution; 'exact with zeros removed' the same on the non-zero pairs; 'exact "
    "permutation' enumerates all 2^n sign flips with mid-ranks when |differences| tie (the "
    "exact distribution would be wrong); 'normal approximation' beyond 16 tied or 50 pairs. "
    "V is the sum of the ranks of the positive differences (R's V, scipy's one-sided "
    "statistic); W = min(W+, W−) is scipy's two-sided statistic. One-sided p: A's values are "
    "lower (better) than B's. The smallest p is what the non-zero pairs can reach at best."
)


def write(a: Analysis, w: ReportWriter) -> list[UnitComparison]:
    """The comparisons of every unit present with the baseline (and BN with no BN)."""
    rows = unit_comparisons(a)
    w.section(f"Every unit against the baseline ({a.baseline}), paired by seed")
    if a.baseline not in a.units():
        w.text(
            f"No members of the baseline unit {a.baseline!r} in this sweep: no comparisons "
            "with it (choose another with `--baseline`)."
        )
    w.text(METHOD_NOTE)
    if a.not_comparable:
        w.text(f"These runs are not comparable with the paper's: {a.not_comparable}.")
    if rows:
        w.records(rows, comparison_columns(), csv_name="comparisons.csv")
        ns = sorted({r.result.n_nonzero for r in rows if r.result.n_nonzero > 0})
        w.text(*(min_p_note(n) for n in ns) if ns else (min_p_note(0),))
    else:
        w.text("No comparisons: only one unit (or no finished values) in this sweep.")
    return rows
