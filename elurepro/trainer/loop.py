"""The one training loop for every experiment.

A population of K members (``models/population.py``) is trained in lockstep: one batch per member
from the stream, one loss per member, one SGD step over all parameters. After each step
``LoopConfig.events`` says what is due, and the loop hands each duty to a collaborator: the
``Evaluator`` and the ``Monitors`` measure, the ``Recorder`` writes, ``Checkpoints`` saves (and, on
the next start, restores: the run then ends exactly as an uninterrupted one), ``StopSignals``
turns SIGINT / SIGTERM into a checkpoint and a stop.

Under DDP (``dist`` given) the population has one member, wrapped in DistributedDataParallel for
the training forward; each rank takes its share of the global batch from the stream. Logged
training values are means over all ranks, evaluation splits are sharded and their sums added up
over ranks, and only rank 0 writes logs, summaries and checkpoints. Every decision that changes
the control flow (stop, divergence, checkpoint) is taken on values all ranks agree on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from elurepro import distributed
from elurepro.data.stream import LoaderSplit, LoaderStream, Split, TensorStream
from elurepro.distributed import DistContext
from elurepro.models.population import Population
from elurepro.schedule import phase_at
from elurepro.tasks import Task
from elurepro.trainer.checkpointing import Checkpoints
from elurepro.trainer.config import Events, ExecConfig, LoopConfig, OptimConfig
from elurepro.trainer.evaluation import Evaluator
from elurepro.trainer.execution import autocast, seed_dropout, training_forward
from elurepro.trainer.monitoring import Monitors
from elurepro.trainer.optimizer import member_lr_scales, sgd
from elurepro.trainer.recorder import Outputs, Recorder
from elurepro.trainer.signals import StopNow, StopSignals, interrupted_line, stopped_at_once_line
from elurepro.trainer.state import LoopState


@dataclass(frozen=True)
class TrainingData:
    """What the loop reads: the training stream and the splits it measures on."""

    stream: TensorStream | LoaderStream
    eval_splits: dict[str, Split | LoaderSplit]  # at every evaluation point
    final_splits: dict[str, Split | LoaderSplit]  # once, after the last step
    monitor: Split | None = None  # the monitors' fixed subset; None: no monitors
    theory_images: int | None = None  # the §3 diagnostics on its first images; None: off


class Trainer:
    """Trains one population to the end of its schedule, from its checkpoint if there is one."""

    def __init__(
        self,
        population: Population,
        task: Task,
        data: TrainingData,
        loop: LoopConfig,
        optim: OptimConfig,
        output: Outputs,
        execution: ExecConfig | None = None,
        dist: DistContext | None = None,
    ) -> None:
        self.pop, self.task, self.data, self.loop, self.optim = population, task, data, loop, optim
        self.output = output
        self.execution = execution or ExecConfig()
        self.dist = dist
        self.k = len(output.members)
        self.device = next(population.parameters()).device
        if dist is not None and self.k != 1:
            raise ValueError(f"under DDP a population has one member, got {self.k}")
        self.is_writer = dist is None or dist.is_main
        self.train_keys = ["loss", "error" if task.name == "classification" else "recon_error"]
        stream = data.stream
        self.recorder = Recorder(
            output, self.is_writer, loop.epoch_axis, stream.steps_per_epoch, stream.batch_size
        )
        self.evaluator = Evaluator(
            population, task, self.k, loop.eval_batch_size, self.execution.bf16, dist
        )
        self.monitors = None
        if data.monitor is not None and self.is_writer:  # they have no collectives
            size, theory = loop.eval_batch_size, data.theory_images
            self.monitors = Monitors(population, self.k, data.monitor, size, task, theory)
        self.optimizer = sgd(population, optim.momentum, optim.weight_decay)
        self.lr_scales = member_lr_scales(optim.lr_scales, self.k, optim.weight_decay)
        self._loss_scales = torch.tensor(self.lr_scales, device=self.device, dtype=torch.float32)
        self._forward = training_forward(population, self.execution, dist)
        member_ids = [m["id"] for m in output.members]
        self.checkpoints = Checkpoints(
            output.population, population, self.optimizer, member_ids, output.fence
        )
        self.signals = StopSignals()

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last ``run`` (SIGINT, SIGTERM), or None."""
        return self.signals.received

    def run(self, stop_at: int | None = None) -> str:
        """Train to the end (or to ``stop_at`` steps, checkpointing there). Returns the status:
        'finished', 'diverged' (every member), or 'interrupted'."""
        state = self.checkpoints.restore(self.device, warn=self.is_writer)
        resumed = state is not None
        if resumed and self.is_writer:
            names = self.recorder.names()
            tqdm.write(self.checkpoints.resume_line(state.step, self.loop.total_steps, names))
        state = state or LoopState.fresh(self.k, self.train_keys, self.device)
        state.alive = [a and not d for a, d in zip(state.alive, self.recorder.done)]
        self.recorder.open(state, resumed)
        folder = self.output.member_dirs[0].parent if self.k == 1 else self.output.population
        bar = tqdm(
            total=self.loop.total_steps,
            initial=state.step,
            disable=not (self.loop.progress and self.is_writer),
            desc=folder.name,
            unit="it",
            dynamic_ncols=True,
        )
        self.signals.install()
        failed = True  # whether an error is on its way out (then closing stays quiet)
        try:
            if not resumed:
                self.recorder.start()
                self._log_point(state, self.loop.events(0), lr=None)
                self._checkpoint(state)
            status = self._train(state, bar, stop_at)
            # No rank leaves (and, under torchrun, gets the others killed) before rank 0 has
            # written its last checkpoint and summaries.
            distributed.barrier(self.dist)
            failed = False
        except StopNow as stop:
            # Whatever was being computed is dropped; the last checkpoint is whole (one being
            # written is finished first, see StopSignals).
            status, failed = "interrupted", False
            if self.is_writer:
                saved = self.checkpoints.saved_step
                where = self.output.population
                tqdm.write(stopped_at_once_line(stop.signum, state.step, saved, where))
        finally:
            bar.close()
            self.signals.uninstall()
            self.recorder.close(quiet=failed)
        return status

    def _train(self, state: LoopState, bar: tqdm, stop_at: int | None) -> str:
        loop = self.loop
        self._set_dropout(state.step)
        phase_starts = {p.start for p in self.optim.dropout_phases}
        last_ckpt = time.monotonic()
        started = time.perf_counter() - state.wall_time
        self.pop.train()
        while state.step < loop.total_steps:
            if state.step in phase_starts:
                self._set_dropout(state.step)
            lr = self._step(state)
            bar.update(1)
            events = loop.events(state.step)
            if events:
                state.wall_time = time.perf_counter() - started
                self._log_point(state, events, lr=lr)
                if not any(state.alive):
                    self._checkpoint(state)
                    return "diverged"
                if state.last_loss is not None:
                    bar.set_postfix(loss=f"{state.last_loss:.4g}")
            # A signal may reach one rank only, and clocks differ: all ranks decide together.
            signalled, ckpt_due = distributed.any_rank(
                self.dist,
                self.signals.received is not None,
                time.monotonic() - last_ckpt > 60 * loop.checkpoint_minutes,
            )
            if signalled or state.step == stop_at:
                state.wall_time = time.perf_counter() - started
                self._checkpoint(state)
                if signalled and self.is_writer:
                    tqdm.write(interrupted_line(state.step, self.output.population))
                return "interrupted"
            if (events.evaluate and state.step < loop.total_steps) or ckpt_due:
                state.wall_time = time.perf_counter() - started
                self._checkpoint(state)
                last_ckpt = time.monotonic()
        state.wall_time = time.perf_counter() - started
        final = self.evaluator.evaluate(self.data.final_splits) if self.data.final_splits else {}
        self.recorder.finish(state, final)
        self._checkpoint(state)
        return "finished"

    def _step(self, state: LoopState) -> float:
        """One SGD step of every member; returns its learning rate (before member scales)."""
        step = state.step
        lr = self.optim.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if self.dist is not None:
            seed_dropout(self.output.members[0]["seed"], step, self.dist, self.device)
        x, y = self.data.stream.batch(step)
        with autocast(self.device, self.execution.bf16):
            out = self._forward(x)
        losses = self.task.loss(out, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        (losses * self._loss_scales).sum().backward()
        self.optimizer.step()
        out = out.detach()
        state.add_step(step, losses.detach(), self.task.train_sums(out, x, y), x.shape[1])
        state.step = step + 1
        return lr

    def _log_point(self, state: LoopState, events: Events, lr: float | None) -> None:
        """Measure what ``events`` asks for (on every rank) and record it."""
        state.merge_ranks(self.dist)
        metrics: dict[str, list[float]] = {}
        if events.train_log:
            metrics.update(state.interval_means())
        if events.evaluate:
            metrics.update(self.evaluator.evaluate(self.data.eval_splits))
        units = None
        if events.activations and self.monitors is not None:
            found, units = self.monitors.measure(self._member_lrs(self.optim.lr(state.step)))
            metrics.update(found)
        for k, at in state.newly_diverged():
            self.recorder.diverged(state, k, at)
        lrs = None if lr is None else self._member_lrs(lr)
        phase = self.optim.phase_index(state.step) if self.optim.dropout_phases else None
        self.recorder.log_point(state, metrics, lrs, units, phase)

    def _checkpoint(self, state: LoopState) -> None:
        state.merge_ranks(self.dist)  # so that every rank resumes with the same accumulators
        if not self.is_writer:
            return
        with self.signals.held():
            self.checkpoints.save(state)
        if state.step < self.loop.total_steps:
            self.signals.stop_if_held()  # a second signal, held back until now

    def _member_lrs(self, lr: float) -> list[float]:
        return [lr * scale for scale in self.lr_scales]

    def _set_dropout(self, step: int) -> None:
        phase = phase_at(self.optim.dropout_phases, step)
        if phase is not None:
            self.pop.set_dropout(list(phase.rates), phase.all_layers)
