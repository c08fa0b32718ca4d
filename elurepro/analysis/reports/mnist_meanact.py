"""mnist_meanact: Fig. 2 and its claims, final values, comparisons, §3 diagnostics, Appendix C."""

from __future__ import annotations

from elurepro.analysis import claims
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import (
    appendix_c,
    fig2_mean_activation,
    paired_differences,
    theory_diagnostics,
)
from elurepro.analysis.tables import comparisons, meanact_finals, per_epoch


def report(a: Analysis, w: ReportWriter) -> None:
    fig2_mean_activation.write(a, w)
    claims.write(a, w, fig2_mean_activation.checks(a))
    meanact_finals.write(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
    theory_diagnostics.write(a, w)
    appendix_c.write(a, w)
    per_epoch.write(a, w)
