"""cifar100_11layer: Figs. 4 and 5, final errors, comparisons, §3 diagnostics, §6 tests."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import (
    fig4_without_batchnorm,
    fig5_batchnorm,
    paired_differences,
    theory_diagnostics,
)
from elurepro.analysis.plotting import max_kstep
from elurepro.analysis.tables import cifar100_finals, cifar100_wilcoxon, comparisons


def report(a: Analysis, w: ReportWriter) -> None:
    xmax = max_kstep(a.table())
    fig4_without_batchnorm.write(a, w, xmax)
    fig5_batchnorm.write(a, w, xmax)
    cifar100_finals.write(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
    theory_diagnostics.write(a, w)
    cifar100_wilcoxon.write(a, w)
