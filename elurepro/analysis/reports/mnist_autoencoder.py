"""mnist_autoencoder: Fig. 3, its final errors, the checks of its claims, comparisons."""

from __future__ import annotations

from elurepro.analysis import claims
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import fig3_autoencoder, paired_differences
from elurepro.analysis.tables import autoencoder_finals, comparisons


def report(a: Analysis, w: ReportWriter) -> None:
    lrs = sorted({m.lr for m in a.members if m.lr is not None}, reverse=True) or [None]
    fig3_autoencoder.write(a, w, lrs)
    autoencoder_finals.write(a, w, lrs)
    claims.write(a, w, fig3_autoencoder.checks(a, lrs))
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
