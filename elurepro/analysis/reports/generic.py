"""An experiment the paper does not have: learning curves, comparisons, §3 diagnostics."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import learning_curves, paired_differences, theory_diagnostics
from elurepro.analysis.tables import comparisons


def report(a: Analysis, w: ReportWriter) -> None:
    learning_curves.write(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
    theory_diagnostics.write(a, w)
