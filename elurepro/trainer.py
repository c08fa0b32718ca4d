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
from elurepro.checkpoint import load_checkpoint, save_checkpoint, write_json
from elurepro.data.stream import LoaderStream, Split, TensorStream, derived_seed
from elurepro.distributed import DistContext
from elurepro.models.mlp import StackedLinear
from elurepro.monitor import ActivationMonitor
from elurepro.runlog import MemberLog, device_name, has_native_bf16, write_summary
from elurepro.schedule import DropoutPhase, PiecewiseConstant, phase_at

CHECKPOINT = "checkpoint.pt"


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
    """How the mathematics runs; ``bf16`` alone changes it and is off in the faithful configs."""

    channels_last: bool = False
    compile: bool = False
    bf16: bool = False
    tf32: bool = False  # CUDA only; changes the mathematics like bf16


class Trainer:
    def __init__(
        self,
        population: nn.Module,
        task: Any,
        stream: TensorStream | LoaderStream,
        eval_splits: dict[str, Split],
        final_splits: dict[str, Split],
        monitor_split: Split | None,
        loop: LoopConfig,
        optim: OptimConfig,
        run_dir: Path,
        members: list[dict[str, Any]],
        provenance: dict[str, Any],
        execution: ExecConfig | None = None,
        dist: DistContext | None = None,
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
        self.members = members
        self.provenance = provenance
        self.exec = execution or ExecConfig()
        self.k = len(members)
        self.device = next(population.parameters()).device
        self.dist = dist
        self.is_writer = dist is None or dist.is_main
        if dist is not None and self.k != 1:
            raise ValueError(f"under DDP a population has one member, got {self.k}")
        # The monitor has no collectives: rank 0 measures alone, for its log.
        watch = monitor_split is not None and self.is_writer
        self.monitor = ActivationMonitor(population, self.k) if watch else None
        self.optimizer = _sgd(population, optim.momentum, optim.weight_decay)
        scales = optim.lr_scales or [1.0] * self.k
        if optim.weight_decay and len(set(scales)) > 1:
            raise ValueError("per-member learning rates need weight_decay == 0 to stay exact")
        self.lr_scales = torch.tensor(scales, device=self.device, dtype=torch.float32)
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
            population.to(memory_format=torch.channels_last)
            population.channels_last = True
        train_module = population
        if dist is not None:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_module = DistributedDataParallel(population, device_ids=ids)
        self._forward = torch.compile(train_module) if self.exec.compile else train_module
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ state
    def _fresh_state(self) -> dict[str, Any]:
        z = lambda: torch.zeros(self.k, dtype=torch.float64, device=self.device)  # noqa: E731
        return {
            "step": 0,
            "wall_time": 0.0,
            "first_bad": torch.full((self.k,), -1, dtype=torch.long, device=self.device),
            "alive": [True] * self.k,
            "acc": {"loss": z(), "count": 0, **{key: z() for key in self._train_keys()}},
        }

    def _train_keys(self) -> list[str]:
        return ["error"] if self.task.name == "classification" else ["recon_error"]

    def _checkpoint(self, state: dict[str, Any]) -> None:
        self._merge_ranks(state)  # so that every rank resumes with the same accumulators
        if not self.is_writer:
            return
        save_checkpoint(
            self.run_dir / CHECKPOINT,
            {
                **state,
                "model": self.pop.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "member_ids": [m["id"] for m in self.members],
            },
        )

    def _restore(self) -> dict[str, Any] | None:
        path = self.run_dir / CHECKPOINT
        if not path.exists():
            return None
        ckpt = load_checkpoint(path, self.device)
        if ckpt["member_ids"] != [m["id"] for m in self.members]:
            raise ValueError(f"{path} belongs to other members; delete it to start over")
        self.pop.load_state_dict(ckpt.pop("model"))
        self.optimizer.load_state_dict(ckpt.pop("optimizer"))
        torch.set_rng_state(ckpt.pop("rng_cpu"))
        cuda_states = ckpt.pop("rng_cuda")
        if cuda_states is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states)
        ckpt.pop("member_ids")
        return ckpt

    def _merge_ranks(self, state: dict[str, Any]) -> None:
        """Make the interval accumulators and first bad steps equal on all ranks (DDP).

        Each rank's accumulators become their mean over ranks, which keeps their sum: the next log
        point's mean over ranks is unchanged, and a checkpoint holds the global values.
        """
        if self.dist is None:
            return
        acc = state["acc"]
        keys = [key for key in acc if key != "count"]
        stacked = distributed.sum_over_ranks(self.dist, torch.stack([acc[key] for key in keys]))
        for key, value in zip(keys, stacked / self.dist.world_size):
            acc[key] = value
        never = torch.iinfo(torch.long).max
        bad = state["first_bad"]
        first = distributed.min_over_ranks(self.dist, torch.where(bad < 0, never, bad))
        state["first_bad"] = torch.where(first == never, -1, first)

    # ------------------------------------------------------------------ loop
    def run(self, stop_at: int | None = None) -> str:
        """Train to the end (or to ``stop_at`` steps, checkpointing there). Returns the status:
        'finished', 'diverged' (every member), or 'interrupted'."""
        state = self._restore()
        resumed = state is not None
        state = state or self._fresh_state()
        logs = [
            MemberLog(self.run_dir / "members" / m["id"], m, state["step"] if resumed else None)
            if self.is_writer
            else None
            for m in self.members
        ]
        total = self.loop.total_steps
        bar = tqdm(
            total=total,
            initial=state["step"],
            disable=not (self.loop.progress and self.is_writer),
            desc=self.run_dir.name,
            unit="it",
            dynamic_ncols=True,
        )
        old_handlers = self._install_signal_handlers()
        try:
            if not resumed:
                if self.is_writer:
                    # Hardware, software and data of the population, readable before any member
                    # has a summary (analyze --partial uses it).
                    write_json(self.run_dir / "provenance.json", self.provenance)
                self._log_point(state, logs, train=False)
                self._checkpoint(state)
            status = self._train(state, logs, bar, stop_at)
            # No rank leaves (and, under torchrun, gets the others killed) before rank 0 has
            # written its last checkpoint and summaries.
            distributed.barrier(self.dist)
        finally:
            bar.close()
            self._restore_signal_handlers(old_handlers)
            for log in logs:
                if log is not None:
                    log.close()
        return status

    def _train(self, state, logs, bar, stop_at) -> str:
        loop, pop = self.loop, self.pop
        total = loop.total_steps
        self._apply_dropout_phase(state["step"])
        last_ckpt = time.monotonic()
        started = time.perf_counter() - state["wall_time"]
        pop.train()
        while state["step"] < total:
            step = state["step"]
            if step in {p.start for p in self.optim_cfg.dropout_phases}:
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
            (losses * self.lr_scales).sum().backward()
            self.optimizer.step()
            self._accumulate(state, losses.detach(), out.detach(), x, y, step)
            state["step"] = step = step + 1
            bar.update(1)
            due = self._due(step)
            if due:
                state["wall_time"] = time.perf_counter() - started
                self._log_point(state, logs, train=True, lr=lr)
                if not any(state["alive"]):
                    self._checkpoint(state)
                    return "diverged"
                if "last_loss" in state:
                    bar.set_postfix(loss=f"{state['last_loss']:.4g}")
            # A signal may reach one rank only, and clocks differ: all ranks decide together.
            signalled, ckpt_due = distributed.any_rank(
                self.dist,
                self._stop_signal is not None,
                time.monotonic() - last_ckpt > 60 * loop.checkpoint_minutes,
            )
            if signalled or step == stop_at:
                state["wall_time"] = time.perf_counter() - started
                self._checkpoint(state)
                if signalled and self.is_writer:
                    tqdm.write(
                        f"interrupted at step {step}; checkpoint saved in {self.run_dir}. "
                        "Run the same command again to continue."
                    )
                return "interrupted"
            if step % loop.eval_every == 0 or ckpt_due:
                state["wall_time"] = time.perf_counter() - started
                self._checkpoint(state)
                last_ckpt = time.monotonic()
        state["wall_time"] = time.perf_counter() - started
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

    def _due(self, step: int) -> bool:
        loop = self.loop
        return (
            step % loop.log_every == 0
            or step % loop.eval_every == 0
            or step == loop.total_steps
            or (loop.act_every is not None and step % loop.act_every == 0)
        )

    def _autocast(self):
        if not self.exec.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _accumulate(self, state, losses, out, x, y, step) -> None:
        acc = state["acc"]
        acc["loss"] += losses.double()
        acc["count"] += 1
        for key, value in self.task.train_sums(out, x, y).items():
            acc[key] += value / x.shape[1]  # per-image mean of this batch
        bad = ~torch.isfinite(losses)
        state["first_bad"] = torch.where(bad & (state["first_bad"] < 0), step, state["first_bad"])

    def _apply_dropout_phase(self, step: int) -> None:
        phase = phase_at(self.optim_cfg.dropout_phases, step)
        if phase is None:
            return
        for module in self.pop.modules():
            if hasattr(module, "set_dropout") and module is not self.pop:
                module.set_dropout(list(phase.rates), phase.all_layers)

    # ------------------------------------------------------------------ logging
    def _log_point(self, state, logs, train: bool, lr: float | None = None) -> None:
        step, loop = state["step"], self.loop
        self._merge_ranks(state)
        metrics: dict[str, list[float]] = {}
        if train and (step % loop.log_every == 0 or step == loop.total_steps):
            acc = state["acc"]
            n = max(acc["count"], 1)
            for key in ["loss", *self._train_keys()]:
                metrics[f"train/{key}"] = (acc[key] / n).tolist()
            state["acc"] = self._fresh_state()["acc"]
        if step % loop.eval_every == 0 or step == loop.total_steps:
            metrics.update(self._evaluate(self.eval_splits))
        if (
            self.monitor
            and loop.act_every
            and (step % loop.act_every == 0 or step == loop.total_steps)
        ):
            metrics.update(self._measure_activations())
        first_bad = state["first_bad"].tolist()
        spe = self.stream.steps_per_epoch
        base = {
            "step": step,
            "epoch": round(step / spe, 6),
            "images": step * self.stream.batch_size,
            "wall_time": round(state["wall_time"], 3),
        }
        if lr is not None:
            base["lr"] = lr
        if self.optim_cfg.dropout_phases:
            # 0 before the first dropout phase, then 1, 2, ... (the analysis marks phase ends)
            base["phase"] = sum(p.start <= step - (step > 0) for p in self.optim_cfg.dropout_phases)
        losses = metrics.get("train/loss")
        if losses:
            live = [v for v, a in zip(losses, state["alive"]) if a and math.isfinite(v)]
            state["last_loss"] = sum(live) / len(live) if live else math.nan
        for k, log in enumerate(logs):
            if not state["alive"][k]:
                continue
            if first_bad[k] >= 0:
                state["alive"][k] = False
                if log is not None:
                    self._write_summary(
                        k, log, state, status="diverged", diverged_at=first_bad[k] + 1
                    )
                    tqdm.write(
                        f"member {self.members[k]['id']} diverged (non-finite loss) at "
                        f"iteration {first_bad[k] + 1}; the other members go on"
                    )
                continue
            if log is not None:
                log.log({**base, **{name: values[k] for name, values in metrics.items()}})
        self._last_metrics = metrics

    @torch.no_grad()
    def _evaluate(self, splits: dict[str, Split]) -> dict[str, list[float]]:
        self.pop.eval()
        out: dict[str, list[float]] = {}
        for name, split in splits.items():
            sums: dict[str, torch.Tensor] = {}
            count = 0  # images this rank evaluated: its shard under DDP, else the whole split
            for x, y in split.chunks(self.loop.eval_batch_size):
                with self._autocast():
                    logits = self._shared_forward(x)
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
                self._shared_forward(x)

        result = {key: value.tolist() for key, value in self.monitor.measure(feed).items()}
        self.pop.train()
        return result

    def _shared_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pop.forward_shared(x)

    def _finish(self, state, logs) -> None:
        final = self._evaluate(self.final_splits) if self.final_splits else {}
        for k, log in enumerate(logs):
            if not state["alive"][k] or log is None:
                continue
            if final:
                log.log(
                    {
                        "step": state["step"],
                        "epoch": round(state["step"] / self.stream.steps_per_epoch, 6),
                        "images": state["step"] * self.stream.batch_size,
                        "wall_time": round(state["wall_time"], 3),
                        **{name: values[k] for name, values in final.items()},
                    }
                )
            self._write_summary(k, log, state, status="finished", diverged_at=None)

    def _write_summary(
        self, k: int, log: MemberLog, state, status: str, diverged_at: int | None
    ) -> None:
        final: dict[str, float] = {}
        if log.metrics_path.exists():
            for line in log.metrics_path.read_text().splitlines():
                record = json.loads(line)
                final.update({key: v for key, v in record.items() if "/" in key})
        write_summary(
            log.folder,
            {
                "status": status,
                "diverged_at_step": diverged_at,
                "final": final,
                "steps": state["step"],
                "wall_time_s": round(state["wall_time"], 3),
                "member": self.members[k],
                **self.provenance,
            },
        )

    # ------------------------------------------------------------------ signals
    def _install_signal_handlers(self):
        def handler(signum, frame):
            if self._stop_signal is not None:  # a second Ctrl-C stops at once
                raise KeyboardInterrupt
            self._stop_signal = signum

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
