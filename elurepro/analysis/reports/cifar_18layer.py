"""cifar_18layer: Table 1, test errors at the phase ends, learning curves, comparisons."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import cifar_18layer_curves, paired_differences
from elurepro.analysis.tables import cifar_18layer_phases, comparisons, table1


def report(a: Analysis, w: ReportWriter) -> None:
    datasets = [d for d in ("cifar10", "cifar100") if any(m.dataset == d for m in a.members)]
    datasets += sorted({m.dataset for m in a.members} - set(datasets))
    groups = list(dict.fromkeys(ms[0].group for ms in a.configs().values()))
    table1.write(a, w, datasets, groups)
    cifar_18layer_phases.write(a, w)
    cifar_18layer_curves.write(a, w, datasets, groups)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
