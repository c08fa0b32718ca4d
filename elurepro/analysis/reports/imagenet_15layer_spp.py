"""imagenet_15layer_spp: Fig. 6, per-member and paper tables, comparisons."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import fig6_imagenet, paired_differences
from elurepro.analysis.tables import comparisons, imagenet_members, imagenet_paper


def report(a: Analysis, w: ReportWriter) -> None:
    fig6_imagenet.write(a, w)
    imagenet_members.write(a, w)
    imagenet_paper.write(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
