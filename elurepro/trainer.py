"""The one training loop for every experiment.

A population of K members (see ``models/population.py``) is trained in lockstep: one batch per
member from the stream, one loss per member, one SGD step over all parameters. Logged values are
accumulated on the device and read back only at log points, so the step itself never waits for
the host. The loop checkpoints atomically at every evaluation and on SIGINT / SIGTERM; the same
command continues from the checkpoint and produces the metrics an uninterrupted run would have.

Under DDP (``dist`` given) the population has one member, wrapped in DistributedDataParallel for
the training forward; each rank takes its share of the global batch from the stream. Logged
training values are means over all ranks, evaluation splits are sharded and their sums added up
over ranks, and only rank 0 writes logs, summaries and checkpoints. Every decision that changes
the control flow (stop, divergence, checkpoint) is taken on values all ranks agree on.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from elurepro import distributed
from elurepro.checkpoint import CheckpointInfo, restore_checkpoint, save_checkpoint, write_json
from elurepro.data.stream import LoaderStream, Split, TensorStream, derived_seed
from elurepro.distributed import DistContext
from elurepro.errors import CheckpointError, storage_error
from elurepro.models.mlp import StackedLinear
from elurepro.models.population import Population
from elurepro.monitor import ActivationMonitor
from elurepro.recorder import FencedLog, no_fence
from elurepro.runlog import device_name, has_native_bf16
from elurepro.schedule import DropoutPhase, PiecewiseConstant, phase_at
from elurepro.theory import TheoryMonitor

CHECKPOINT = "checkpoint.pt"


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


@dataclass
class ExecConfig:
    """How the mathematics runs; ``bf16`` and ``tf32`` change it and are off in the faithful
    configs."""

    channels_last: bool = False
    compile: bool = False
    # torch.compile's mode: "reduce-overhead" captures the compiled forward and backward as
    # CUDA graphs on a GPU (static shapes: every training batch has the same size); on a CPU it
    # compiles as "default" does.
    compile_mode: str = "default"
    bf16: bool = False
    tf32: bool = False  # CUDA only


@dataclass
class LoopState:
    """Everything the loop carries from step to step, and what a checkpoint restores."""

    step: int
    wall_time: float
    first_bad: torch.Tensor  # [K] first step with a non-finite loss, -1 while all were finite
    alive: list[bool]
    sums: dict[str, torch.Tensor]  # [K] per training metric, summed over the interval's steps
    count: int = 0  # steps in the interval
    last_loss: float | None = None  # mean training loss of the live members, for the bar

    @classmethod
    def fresh(cls, k: int, keys: Sequence[str], device: torch.device) -> LoopState:
        return cls(
            step=0,
            wall_time=0.0,
            first_bad=torch.full((k,), -1, dtype=torch.long, device=device),
            alive=[True] * k,
            sums=_zeros(k, keys, device),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint (no class reference, so refactors keep it loadable)."""
        return {
            "step": self.step,
            "wall_time": self.wall_time,
            "first_bad": self.first_bad,
            "alive": list(self.alive),
            "sums": dict(self.sums),
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        return cls(d["step"], d["wall_time"], d["first_bad"], d["alive"], d["sums"], d["count"])


def _zeros(k: int, keys: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: torch.zeros(k, dtype=torch.float64, device=device) for key in keys}


class _StopNow(KeyboardInterrupt):
    """A second SIGINT / SIGTERM: stop at once, without a further checkpoint."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Trainer:
    def __init__(
        self,
        population: Population,
        task: Any,
        stream: TensorStream | LoaderStream,
        eval_splits: dict[str, Split],
        final_splits: dict[str, Split],
        monitor_split: Split | None,
        loop: LoopConfig,
        optim: OptimConfig,
        run_dir: Path,
        member_dirs: Sequence[Path],
        members: list[dict[str, Any]],
        provenance: dict[str, Any],
        execution: ExecConfig | None = None,
        dist: DistContext | None = None,
        claims: Any = None,
        done: Sequence[bool] | None = None,
        theory_images: int | None = None,
    ) -> None:
        self.pop = population
        self.task = task
        self.stream = stream
        self.eval_splits = eval_splits
        self.final_splits = final_splits
        self.monitor_split = monitor_split
        self.loop = loop
        self.optim_cfg = optim
        self.run_dir = Path(run_dir)
        self.member_dirs = [Path(p) for p in member_dirs]
        self.members = members
        self.provenance = provenance
        self.exec = execution or ExecConfig()
        self.k = len(members)
        self.device = next(population.parameters()).device
        self.dist = dist
        # Every write into the member folders and the checkpoint passes the claims' fence.
        self._fence = claims.check if claims is not None else no_fence
        # Members finished before (diverged in this population, or trained elsewhere): they are
        # computed along in lockstep but never written.
        self.done = list(done or [False] * len(members))
        self.is_writer = dist is None or dist.is_main
        if len(self.member_dirs) != self.k:
            raise ValueError(f"{len(self.member_dirs)} member folders for {self.k} members")
        if dist is not None and self.k != 1:
            raise ValueError(f"under DDP a population has one member, got {self.k}")
        # The monitor has no collectives: rank 0 measures alone, for its log.
        watch = monitor_split is not None and self.is_writer
        self.monitor = ActivationMonitor(population, self.k) if watch else None
        # The §3 diagnostics (opt-in), at the monitor's points, on a fixed batch of its subset.
        self.theory = None
        if watch and theory_images:
            self.theory = TheoryMonitor(population, self.k)
            self.theory_batch = (monitor_split.x[:theory_images], monitor_split.y[:theory_images])
        self.optimizer = _sgd(population, optim.momentum, optim.weight_decay)
        scales = list(optim.lr_scales or [1.0] * self.k)
        if optim.weight_decay and len(set(scales)) > 1:
            raise ValueError("per-member learning rates need weight_decay == 0 to stay exact")
        self.lr_scales = scales
        self._loss_scales = torch.tensor(scales, device=self.device, dtype=torch.float32)
        self.train_keys = ["loss", "error" if task.name == "classification" else "recon_error"]
        if self.exec.bf16 and not has_native_bf16(self.device):
            warnings.warn(
                f"execution.bf16=true on {device_name(self.device)}, which has no native bf16 "
                "matrix units: bf16 is emulated there and runs far slower than fp32 (a 256x256 "
                "product: about 50x on the project's AVX2 CPU). Drop execution.bf16 here.",
                stacklevel=2,
            )
        if self.device.type == "cuda":
            # cuDNN uses TF32 for convolutions unless told not to: faithful fp32 by default.
            torch.backends.cudnn.allow_tf32 = self.exec.tf32
            torch.backends.cuda.matmul.allow_tf32 = self.exec.tf32
        if self.exec.channels_last:
            population.use_channels_last()
        train_module = population
        if dist is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_module = DistributedDataParallel(population, device_ids=ids)
        self._forward = (
            torch.compile(train_module, mode=self.exec.compile_mode)
            if self.exec.compile
            else train_module
        )
        self._stop_signal: int | None = None
        self._saving = False  # a second signal waits while a checkpoint is being written
        self._pending_stop: int | None = None  # a second signal that came during a write
        self._saved_step: int | None = None  # the step of the last checkpoint on disk
        # False after falling back from a damaged checkpoint: the next save must not keep the
        # damaged file as the previous one.
        self._keep_previous = True
        self._resumed_from: CheckpointInfo | None = None
        # Per-unit mean activations of the last monitor pass, [layer][member], on the CPU: the
        # log point writes them as histograms.
        self._unit_means: list[list[torch.Tensor]] | None = None

    @property
    def stop_signal(self) -> int | None:
        """The signal that stopped the last ``run`` (SIGINT, SIGTERM), or None."""
        return self._stop_signal

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, state: LoopState) -> None:
        self._merge_ranks(state)  # so that every rank resumes with the same accumulators
        if not self.is_writer:
            return
        self._saving = True
        try:
            save_checkpoint(
                self.run_dir / CHECKPOINT,
                {
                    **state.to_dict(),
                    "model": self.pop.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    # The dropout masks' source. Every other draw is derived from (seed, epoch,
                    # step, image, rank) alone: data order, augmentation, DDP ranks' masks.
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                    "member_ids": [m["id"] for m in self.members],
                },
                step=state.step,
                keep_previous=self._keep_previous,
                fence=self._fence,
            )
        finally:
            self._saving = False
        self._keep_previous = True
        self._saved_step = state.step
        if self._pending_stop is not None and state.step < self.loop.total_steps:
            raise _StopNow(self._pending_stop)  # the second signal, held back until now

    def _restore(self) -> LoopState | None:
        path = self.run_dir / CHECKPOINT
        restored = restore_checkpoint(path, self.device)
        if restored is None:
            return None
        ckpt = restored.state
        if ckpt["member_ids"] != [m["id"] for m in self.members]:
            raise CheckpointError(
                f"{restored.info.path} belongs to other members; delete it to start over"
            )
        if restored.fell_back:
            self._keep_previous = False  # the damaged file is overwritten, the good one kept
            if self.is_writer:
                (bad, why), *_ = restored.skipped
                warnings.warn(
                    f"checkpoint {bad} is unusable ({why}); continuing from the previous "
                    f"checkpoint {restored.info.path.name} (step {ckpt['step']}) instead",
                    stacklevel=2,
                )
        self._resumed_from = restored.info
        self.pop.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        return LoopState.from_dict(ckpt)

    def _merge_ranks(self, state: LoopState) -> None:
        """Make the interval sums and first bad steps equal on all ranks (DDP).

        Each rank's sums become their mean over ranks, which keeps their total: the next log
        point's mean over ranks is unchanged, and a checkpoint holds the global values.
        """
        if self.dist is None:
            return
        keys = list(state.sums)
        stacked = distributed.sum_over_ranks(
            self.dist, torch.stack([state.sums[key] for key in keys])
        )
        for key, value in zip(keys, stacked / self.dist.world_size):
            state.sums[key] = value
        never = torch.iinfo(torch.long).max
        bad = state.first_bad
        first = distributed.min_over_ranks(self.dist, torch.where(bad < 0, never, bad))
        state.first_bad = torch.where(first == never, -1, first)

    # ------------------------------------------------------------------ loop
    def run(self, stop_at: int | None = None) -> str:
        """Train to the end (or to ``stop_at`` steps, checkpointing there). Returns the status:
        'finished', 'diverged' (every member), or 'interrupted'."""
        state = self._restore()
        resumed = state is not None
        if resumed:
            self._saved_step = state.step
            if self.is_writer:
                tqdm.write(self._resume_line(state.step))
        state = state or LoopState.fresh(self.k, self.train_keys, self.device)
        state.alive = [a and not d for a, d in zip(state.alive, self.done)]
        try:
            logs = [
                FencedLog(
                    folder, m, state.step if resumed else None, self._fence, self.loop.epoch_axis
                )
                if self.is_writer and not done
                else None
                for folder, m, done in zip(self.member_dirs, self.members, self.done)
            ]
        except OSError as err:  # the folder named where the system names none
            raise storage_error(err, self.member_dirs[0].parent) from None
        bar = tqdm(
            total=self.loop.total_steps,
            initial=state.step,
            disable=not (self.loop.progress and self.is_writer),
            desc=self.member_dirs[0].parent.name if self.k == 1 else self.run_dir.name,
            unit="it",
            dynamic_ncols=True,
        )
        old_handlers = self._install_signal_handlers()
        failed = True  # whether an error is on its way out (then closing stays quiet)
        try:
            if not resumed:
                if self.is_writer:
                    # Hardware, software and data, readable before any member has a summary
                    # (analyze --partial uses it).
                    write_json(self.run_dir / "provenance.json", self.provenance, self._fence)
                    for log in logs:
                        if log is not None:
                            log.write_json("provenance.json", self.provenance)
                            log.dashboard(self.provenance, "unfinished")  # HParams, text
                self._log_point(state, logs, self.loop.events(0), lr=None)
                self._checkpoint(state)
            status = self._train(state, logs, bar, stop_at)
            # No rank leaves (and, under torchrun, gets the others killed) before rank 0 has
            # written its last checkpoint and summaries.
            distributed.barrier(self.dist)
            failed = False
        except _StopNow as stop:
            # A second signal: whatever was being computed is dropped; the last checkpoint is
            # whole (a checkpoint being written is finished first, see the handler).
            status, failed = "interrupted", False
            if self.is_writer:
                kept = (
                    f"the checkpoint of step {self._saved_step} in {self.run_dir} is intact"
                    if self._saved_step is not None
                    else "no checkpoint was written yet"
                )
                tqdm.write(
                    f"stopped at once by a second {signal.Signals(stop.signum).name} at step "
                    f"{state.step}; {kept}. Run the same command again to continue."
                )
        finally:
            bar.close()
            self._restore_signal_handlers(old_handlers)
            self._close_logs(logs, quiet=failed)
        return status

    def _resume_line(self, step: int) -> str:
        info = self._resumed_from
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.saved_at))
        names = ", ".join(m["id"] for m, d in zip(self.members, self.done) if not d)
        return (
            f"resuming {self.run_dir.name} ({names}) from step {step} of "
            f"{self.loop.total_steps} (checkpoint of {when})"
        )

    @staticmethod
    def _close_logs(logs, quiet: bool) -> None:
        """Close every member log; a failure is reported unless another error is on its way."""
        error = None
        for log in logs:
            if log is None:
                continue
            try:
                log.close()
            except OSError as err:
                error = error or storage_error(err, log.metrics_path)
        if error is not None and not quiet:
            raise error

    def _train(self, state: LoopState, logs, bar, stop_at: int | None) -> str:
        loop, pop = self.loop, self.pop
        phase_starts = {p.start for p in self.optim_cfg.dropout_phases}
        self._apply_dropout_phase(state.step)
        last_ckpt = time.monotonic()
        started = time.perf_counter() - state.wall_time
        pop.train()
        while state.step < loop.total_steps:
            step = state.step
            if step in phase_starts:
                self._apply_dropout_phase(step)
            lr = self.optim_cfg.lr(step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            if self.dist is not None:
                self._seed_step(step)
            x, y = self.stream.batch(step)
            with self._autocast():
                out = self._forward(x)
            losses = self.task.loss(out, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            (losses * self._loss_scales).sum().backward()
            self.optimizer.step()
            self._accumulate(state, losses.detach(), out.detach(), x, y, step)
            state.step = step = step + 1
            bar.update(1)
            events = loop.events(step)
            if events:
                state.wall_time = time.perf_counter() - started
                self._log_point(state, logs, events, lr=lr)
                if not any(state.alive):
                    self._checkpoint(state)
                    return "diverged"
                if state.last_loss is not None:
                    bar.set_postfix(loss=f"{state.last_loss:.4g}")
            # A signal may reach one rank only, and clocks differ: all ranks decide together.
            signalled, ckpt_due = distributed.any_rank(
                self.dist,
                self._stop_signal is not None,
                time.monotonic() - last_ckpt > 60 * loop.checkpoint_minutes,
            )
            if signalled or step == stop_at:
                state.wall_time = time.perf_counter() - started
                self._checkpoint(state)
                if signalled and self.is_writer:
                    tqdm.write(
                        f"interrupted at step {step}; checkpoint saved in {self.run_dir}. "
                        "Run the same command again to continue."
                    )
                return "interrupted"
            if (events.evaluate and step < loop.total_steps) or ckpt_due:
                state.wall_time = time.perf_counter() - started
                self._checkpoint(state)
                last_ckpt = time.monotonic()
        state.wall_time = time.perf_counter() - started
        self._finish(state, logs)
        self._checkpoint(state)
        return "finished"

    def _seed_step(self, step: int) -> None:
        """Dropout masks from (seed, step, rank) under DDP: each rank draws its own, and a resumed
        run draws the masks it would have drawn, without saving every rank's RNG state."""
        seed = derived_seed(self.members[0]["seed"], step, self.dist.rank, "dropout")
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index].manual_seed(seed)

    def _autocast(self):
        if not self.exec.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _accumulate(self, state: LoopState, losses, out, x, y, step: int) -> None:
        state.sums["loss"] += losses.double()
        state.count += 1
        for key, value in self.task.train_sums(out, x, y).items():
            state.sums[key] += value / x.shape[1]  # per-image mean of this batch
        bad = ~torch.isfinite(losses)
        state.first_bad = torch.where(bad & (state.first_bad < 0), step, state.first_bad)

    def _apply_dropout_phase(self, step: int) -> None:
        phase = phase_at(self.optim_cfg.dropout_phases, step)
        if phase is not None:
            self.pop.set_dropout(list(phase.rates), phase.all_layers)

    # ------------------------------------------------------------------ logging
    def _log_point(self, state: LoopState, logs, events: Events, lr: float | None) -> None:
        self._merge_ranks(state)
        metrics = self._measure(state, events)
        self._mark_divergence(state, logs)
        base = self._position(state)
        if self.optim_cfg.dropout_phases:
            # 0 before the first dropout phase, then 1, 2, ... (the analysis marks phase ends)
            step = state.step
            base["phase"] = sum(p.start <= step - (step > 0) for p in self.optim_cfg.dropout_phases)
        for k, log in enumerate(logs):
            if log is None or not state.alive[k]:
                continue
            record = dict(base)
            if lr is not None:
                record["lr"] = lr * self.lr_scales[k]  # the member's own learning rate
            record.update({name: values[k] for name, values in metrics.items()})
            try:
                log.log(record)
                if self._unit_means is not None:
                    log.histograms(
                        state.step,
                        {f"act/units/layer{i + 1}": u[k] for i, u in enumerate(self._unit_means)},
                    )
            except OSError as err:  # a full disk names no file: name the log
                raise storage_error(err, log.metrics_path) from None
        self._unit_means = None

    def _measure(self, state: LoopState, events: Events) -> dict[str, list[float]]:
        """The metrics due at this log point, per member; resets the training interval."""
        metrics: dict[str, list[float]] = {}
        if events.train_log:
            n = max(state.count, 1)
            for key in self.train_keys:
                metrics[f"train/{key}"] = (state.sums[key] / n).tolist()
            state.sums = _zeros(self.k, self.train_keys, self.device)
            state.count = 0
            live = [v for v, a in zip(metrics["train/loss"], state.alive) if a and math.isfinite(v)]
            state.last_loss = sum(live) / len(live) if live else math.nan
        if events.evaluate:
            metrics.update(self._evaluate(self.eval_splits))
        if events.activations and self.monitor:
            metrics.update(self._measure_activations())
        if events.activations and self.theory:
            x, y = self.theory_batch
            lr = self.optim_cfg.lr(state.step)
            lrs = [lr * scale for scale in self.lr_scales]
            found = self.theory.measure(x, y, self.task.per_example, lrs)
            metrics.update({key: value.tolist() for key, value in found.items()})
        return metrics

    def _position(self, state: LoopState, step: int | None = None) -> dict[str, Any]:
        step = state.step if step is None else step
        return {
            "step": step,
            "epoch": round(step / self.stream.steps_per_epoch, 6),
            "images": step * self.stream.batch_size,
            "wall_time": round(state.wall_time, 3),
        }

    def _mark_divergence(self, state: LoopState, logs) -> None:
        """Members whose loss became non-finite stop being logged and get their summary."""
        first_bad = state.first_bad.tolist()
        for k, log in enumerate(logs):
            if not state.alive[k] or first_bad[k] < 0:
                continue
            state.alive[k] = False
            if log is not None:
                at = first_bad[k] + 1
                final = self._write_summary(k, log, state, status="diverged", diverged_at=at)
                # A NaN at the divergence for each of its metrics: its curves end there, and
                # TensorBoard's HParams shows no value from before it as the member's result.
                try:
                    log.log({**self._position(state, at), **dict.fromkeys(final, math.nan)})
                except OSError as err:
                    raise storage_error(err, log.metrics_path) from None
                tqdm.write(
                    f"member {self.members[k]['id']} diverged (non-finite loss) at "
                    f"iteration {first_bad[k] + 1}; the other members go on"
                )

    @torch.no_grad()
    def _evaluate(self, splits: dict[str, Split]) -> dict[str, list[float]]:
        self.pop.eval()
        out: dict[str, list[float]] = {}
        for name, split in splits.items():
            sums: dict[str, torch.Tensor] = {}
            count = 0  # images this rank evaluated: its shard under DDP, else the whole split
            for x, y in split.chunks(self.loop.eval_batch_size):
                with self._autocast():
                    logits = self.pop.forward_shared(x)
                for key, value in self.task.eval_sums(logits, x, y).items():
                    sums[key] = sums.get(key, 0) + value
                count += x.shape[0]
            keys = list(sums)
            counts = torch.full((1, self.k), float(count), dtype=torch.float64, device=self.device)
            total = distributed.sum_over_ranks(
                self.dist, torch.cat([torch.stack([sums[key] for key in keys]), counts])
            )
            for key, value in zip(keys, total[:-1]):
                out[f"{name}/{key}"] = (value / total[-1]).tolist()
        self.pop.train()
        return out

    @torch.no_grad()
    def _measure_activations(self) -> dict[str, list[float]]:
        self.pop.eval()

        def feed() -> None:
            for x, _ in self.monitor_split.chunks(self.loop.eval_batch_size):
                self.pop.forward_shared(x)

        medians, units = self.monitor.measure_units(feed)
        result = {key: value.tolist() for key, value in medians.items()}
        # One copy to the host for all layers and members (the vectors differ in length).
        flat = [u for layer in units for u in layer]
        host = torch.cat(flat).cpu().split([len(u) for u in flat])
        self._unit_means = [list(host[i * self.k : (i + 1) * self.k]) for i in range(len(units))]
        self.pop.train()
        return result

    def _finish(self, state: LoopState, logs) -> None:
        final = self._evaluate(self.final_splits) if self.final_splits else {}
        for k, log in enumerate(logs):
            if not state.alive[k] or log is None:
                continue
            if final:
                try:
                    log.log({**self._position(state), **{n: v[k] for n, v in final.items()}})
                except OSError as err:
                    raise storage_error(err, log.metrics_path) from None
            self._write_summary(k, log, state, status="finished", diverged_at=None)

    def _write_summary(
        self, k: int, log: FencedLog, state: LoopState, status: str, diverged_at: int | None
    ) -> dict[str, float]:
        """Write summary.json and the dashboard file; returns the last value of each metric."""
        final: dict[str, float] = {}
        if log.metrics_path.exists():
            for line in log.metrics_path.read_text().splitlines():
                record = json.loads(line)
                final.update({key: v for key, v in record.items() if "/" in key})
        log.write_json(
            "summary.json",
            {
                "status": status,
                "diverged_at_step": diverged_at,
                "final": final,
                "steps": state.step,
                "wall_time_s": round(state.wall_time, 3),
                "member": self.members[k],
                **self.provenance,
            },
        )
        log.dashboard(self.provenance, status)  # the HParams session's final status
        return final

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self):
        def handler(signum, frame):
            if self._stop_signal is None:  # the loop checkpoints and stops at the next step
                self._stop_signal = signum
            elif not self._saving:  # a second one stops at once: the last checkpoint is whole
                raise _StopNow(signum)
            else:  # one being written is finished first, then the loop stops
                self._pending_stop = signum

        try:
            return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not in the main thread
            return {}

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)


def _sgd(population: nn.Module, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with weight decay on conv / linear weights only (U4), never on biases or BN."""
    decay, no_decay = [], []
    for module in population.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(
                module, (nn.Conv2d, nn.Linear, StackedLinear)
            )
            (decay if is_weight else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]], lr=1.0, momentum=momentum, foreach=True
    )
