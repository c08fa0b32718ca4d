"""A sweep over learning rates (Fig. 3): configurations per rate, when members diverged."""

from __future__ import annotations

from collections.abc import Sequence

from elurepro.analysis.collect import DIVERGED, MemberRun
from elurepro.analysis.context import Analysis
from elurepro.analysis.table import RunTable


def configs_at(a: Analysis, lr: float | None) -> dict[str, list[MemberRun]]:
    """The configurations trained at learning rate `lr`."""
    return {c: ms for c, ms in a.configs().items() if ms[0].lr == lr}


def activation(members: Sequence[MemberRun]) -> str:
    """The unit with +bn for BN: ``elu``, ``relu+bn``."""
    return members[0].unit + ("+bn" if members[0].batchnorm else "")


def divergence_epochs(a: Analysis, members: Sequence[MemberRun]) -> list[float | None]:
    return [_divergence_epoch(a.table(), m) for m in members if m.status == DIVERGED]


def lr_text(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:g}"


def _divergence_epoch(table: RunTable, m: MemberRun) -> float | None:
    step = m.diverged_at_step
    if step is not None:
        epoch = table.step_to_epoch(m, step)
        if epoch is not None:
            return epoch
    return table.last_epoch(m)
