"""What the loop is told: lengths and intervals, the optimiser's schedule, how the mathematics runs.

Plain values, filled in by ``elurepro/assemble`` from the Hydra config (``LoopConfig`` and
``OptimConfig`` in steps, after the budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from elurepro.config.schema import Execution
from elurepro.schedule import DropoutPhase, PiecewiseConstant

# How the mathematics runs: the config's execution section as it is (its schema, where each
# key is explained); bf16 and tf32 change the mathematics and are off in the faithful configs.
ExecConfig = Execution


@dataclass(frozen=True)
class Events:
    """What happens at a log point: after a step (or before the first, at step 0)."""

    train_log: bool  # training means over the interval since the last one
    evaluate: bool  # the evaluation splits (and, during training, a checkpoint)
    activations: bool  # the mean-activation monitor

    def __bool__(self) -> bool:
        return self.train_log or self.evaluate or self.activations


@dataclass
class LoopConfig:
    """Lengths and intervals, all in steps (iterations)."""

    total_steps: int
    log_every: int
    eval_every: int
    act_every: int | None = None
    checkpoint_minutes: float = 10.0
    eval_batch_size: int = 1000
    progress: bool = True
    epoch_axis: bool = False  # the protocol counts epochs: each log point's epoch is a scalar

    def events(self, step: int) -> Events:
        """The one schedule of what happens at ``step``. A multiple of an interval less than a
        whole interval before the end is skipped: the end then covers the rest, so that no log
        point (least of all the last, the member's result) stands for a few iterations."""
        end = step == self.total_steps

        def due(every: int) -> bool:
            return end or (step % every == 0 and step + every <= self.total_steps)

        return Events(
            train_log=step > 0 and due(self.log_every),
            evaluate=due(self.eval_every),
            activations=self.act_every is not None and due(self.act_every),
        )


@dataclass
class OptimConfig:
    lr: PiecewiseConstant
    momentum: float = 0.0
    weight_decay: float = 0.0
    # Per-member learning-rate factors, applied by scaling each member's loss. Exact for SGD with
    # or without momentum (the update is linear in the gradient), not with weight decay.
    lr_scales: Sequence[float] | None = None
    dropout_phases: Sequence[DropoutPhase] = field(default_factory=list)

    def phase_index(self, step: int) -> int:
        """The dropout phase of the log point at ``step``: that of the step just trained (0
        before the first phase, then 1, 2, ...; the analysis marks phase ends)."""
        return sum(p.start <= step - (step > 0) for p in self.dropout_phases)
