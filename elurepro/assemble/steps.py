"""Step planning: the config's lengths, intervals and schedules, in steps, after the budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import DictConfig

from elurepro.schedule import DropoutPhase, PiecewiseConstant
from elurepro.trainer.config import LoopConfig, OptimConfig


@dataclass
class StepPlan:
    loop: LoopConfig
    optim: OptimConfig


def plan_steps(cfg: DictConfig, steps_per_epoch: int, lrs: Sequence[float]) -> StepPlan:
    """Lengths, intervals and schedules in steps, after the budget's scaling."""
    t, o, b = cfg.train, cfg.optim, cfg.budget
    per_unit = steps_per_epoch if t.unit == "epoch" else 1
    paper_steps = round(t.length * per_unit)
    total = max(1, math.ceil(paper_steps * b.scale))
    if b.max_steps is not None:
        total = min(total, b.max_steps)
    ratio = total / paper_steps  # schedule boundaries shrink with the run
    if b.stop_after is not None:  # the first N steps of that schedule, boundaries unmoved
        total = min(total, b.stop_after)

    def steps(x: float) -> int:
        return max(1, round(x * per_unit * ratio))

    def interval(x: float | None) -> int | None:
        # At least four log points however short the budget.
        return None if x is None else max(1, min(round(x * per_unit), total // 4 or 1))

    # The schedule is defined for optim.lr; members with another learning rate scale it.
    top = max(lrs)
    values = [v * (top / o.lr) for v in [o.lr, *o.lr_values]]
    # A very short budget can squeeze two boundaries onto one step: the later value wins.
    merged: dict[int, float] = {}
    for m, v in zip(o.milestones, values[1:]):
        merged[steps(m)] = v
    lr = PiecewiseConstant(list(merged), [values[0], *merged.values()])
    phases = [
        DropoutPhase(steps(p.start), tuple(p.rates), bool(p.all_layers)) for p in o.dropout_phases
    ]
    loop = LoopConfig(
        total_steps=total,
        log_every=interval(t.log_every),
        eval_every=interval(t.eval_every),
        act_every=interval(t.act_every),
        checkpoint_minutes=t.checkpoint_minutes,
        eval_batch_size=t.eval_batch_size,
        progress=cfg.progress,
        epoch_axis=t.unit == "epoch",
    )
    optim = OptimConfig(
        lr=lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        lr_scales=[x / top for x in lrs],
        dropout_phases=phases,
    )
    return StepPlan(loop, optim)
