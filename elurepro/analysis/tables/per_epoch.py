"""``per_epoch.csv``: every member's logged values at each epoch, one line per member and epoch."""

from __future__ import annotations

from elurepro.analysis.context import Analysis, ReportWriter


def write(a: Analysis, w: ReportWriter) -> None:
    """The table's rows pivoted to one column per metric; members of every status."""
    table = a.table()
    metrics = table.metrics()
    values = table.by_member_epoch()
    index = {id(m): i for i, m in enumerate(table.members)}
    epochs: dict[int, list[float]] = {}
    for member, epoch in values:
        epochs.setdefault(member, []).append(epoch)
    rows = []
    for config, members in a.configs().items():
        for m in members:
            i = index[id(m)]
            for epoch in sorted(epochs.get(i, [])):
                logged = values[(i, epoch)]
                rows.append(
                    [epoch, config, m.seed, m.id, m.status] + [logged.get(n) for n in metrics]
                )
    w.csv("per_epoch.csv", ["epoch", "group", "seed", "member", "status"] + metrics, rows)
    w.text("Per-epoch numbers of every member (all statuses): `per_epoch.csv`.")
