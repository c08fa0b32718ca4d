"""Every write of a training run into its members' folders, fenced by the claim it is made under.

A worker writes a member's folder only while it holds the member's claim (``store/claims.py``).
A worker paused for longer than the claim timeout (a suspended machine, a stalled NFS client, a
preempted VM, SIGSTOP) has its members taken over by another worker, and must write nothing
there once it runs again: no metrics line, TensorBoard event, summary or checkpoint. So each of
those writes calls the fence right before it lands, and ``FencedLog`` is the one way into a
member's folder: a ``MemberLog`` whose writes pass the fence first. TensorBoard events are
flushed inside the same call, so none is left queued for the event writer's thread to write
later. The checkpoint and the JSON files take the fence down to their atomic rename
(``checkpoint.atomic_write_bytes``).

``Recorder`` writes a population's members through their ``FencedLog``: provenance, one record
per log point, divergence, the final evaluation, summaries and dashboards.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from elurepro.checkpoint import Fence, write_json
from elurepro.errors import storage_error
from elurepro.runlog import MemberLog
from elurepro.trainer.state import LoopState


def no_fence() -> None:
    """The fence of a writer that holds no claims (tests, benchmarks)."""


class FencedLog:
    """One member's log, summary and provenance; each write first passes ``fence``."""

    def __init__(
        self,
        folder: Path,
        member: dict[str, Any],
        resume_step: int | None,
        fence: Fence,
        epoch_axis: bool = False,
    ) -> None:
        self._fence = fence
        fence()  # opening truncates metrics and removes old events: a write too
        self._log = MemberLog(folder, member, resume_step, epoch_axis)
        self._log.tb.flush()
        self.folder = self._log.folder
        self.metrics_path = self._log.metrics_path

    def log(self, record: dict[str, Any]) -> None:
        self._fence()
        self._log.log(record)
        self._log.tb.flush()

    def histograms(self, step: int, vectors: Mapping[str, torch.Tensor]) -> None:
        self._fence()
        self._log.histograms(step, vectors)
        self._log.tb.flush()

    def dashboard(self, provenance: Mapping[str, Any], status: str) -> Path:
        self._fence()
        return self._log.dashboard(provenance, status)

    def write_json(self, name: str, obj: Any) -> None:
        """``summary.json``, ``provenance.json``: fenced down to the rename."""
        write_json(self.folder / name, obj, self._fence)

    def close(self) -> None:
        self._log.close()


@dataclass(frozen=True)
class Outputs:
    """Where a population's training writes, and what it writes about itself."""

    population: Path  # the population's folder: checkpoint and provenance.json
    member_dirs: Sequence[Path]
    members: Sequence[dict[str, Any]]  # each member's record (member.json, in its summary)
    provenance: dict[str, Any]  # hardware, software, data, config: in every summary too
    # Members finished before (diverged in this population, or trained elsewhere): computed
    # along in lockstep but never written.
    done: Sequence[bool] | None = None
    fence: Fence = no_fence  # raises once the claim is lost; called before every write

    def __post_init__(self) -> None:
        if len(self.member_dirs) != len(self.members):
            raise ValueError(
                f"{len(self.member_dirs)} member folders for {len(self.members)} members"
            )


class Recorder:
    """Writes a population's members (rank 0 only, and never members done before): records
    keyed by step, epoch, images and wall time; the last value of each metric is kept in the
    loop's state (and so in the checkpoint) for the member's summary."""

    def __init__(
        self,
        output: Outputs,
        writes: bool,
        epoch_axis: bool,
        steps_per_epoch: int,
        batch_size: int,
    ) -> None:
        self.out = output
        self.done = list(output.done or [False] * len(output.members))
        self.writes = writes
        self.epoch_axis = epoch_axis
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.logs: list[FencedLog | None] = [None] * len(output.members)

    def names(self) -> list[str]:
        """The ids of the members trained here (not done before)."""
        return [m["id"] for m, done in zip(self.out.members, self.done) if not done]

    def open(self, state: LoopState, resumed: bool) -> None:
        """Open each member's log; a resumed one drops what was written after the checkpoint."""
        resume_step = state.step if resumed else None
        try:
            self.logs = [
                FencedLog(folder, m, resume_step, self.out.fence, self.epoch_axis)
                if self.writes and not done
                else None
                for folder, m, done in zip(self.out.member_dirs, self.out.members, self.done)
            ]
        except OSError as err:  # the folder named where the system names none
            raise storage_error(err, self.out.member_dirs[0].parent) from None
        if state.final is None:
            state.final = [_last_values(log) for log in self.logs]
        if resumed:  # Running again in TensorBoard's HParams tab (``start`` does it afresh)
            for log in self.logs:
                if log is not None:
                    log.dashboard(self.out.provenance, "unfinished")

    def start(self) -> None:
        """Hardware, software and data, readable before any member has a summary (analyze
        --partial uses it); TensorBoard's text and an unfinished HParams session."""
        if not self.writes:
            return
        provenance = self.out.provenance
        write_json(self.out.population / "provenance.json", provenance, self.out.fence)
        for log in self.logs:
            if log is not None:
                log.write_json("provenance.json", provenance)
                log.dashboard(provenance, "unfinished")

    def log_point(
        self,
        state: LoopState,
        metrics: dict[str, list[float]],
        lrs: list[float] | None,
        units: list[list[torch.Tensor]] | None,
        phase: int | None,
    ) -> None:
        """One record per live member: ``metrics`` [name][member], each member's own learning
        rate, and the histograms of its per-unit mean activations ``units`` [layer][member]."""
        base = self.position(state, state.step)
        if phase is not None:
            base["phase"] = phase
        for k, log in enumerate(self.logs):
            if log is None or not state.alive[k]:
                continue
            record = dict(base)
            if lrs is not None:
                record["lr"] = lrs[k]
            record.update({name: values[k] for name, values in metrics.items()})
            self._write(state, k, record)
            if units is not None:
                vectors = {f"act/units/layer{i + 1}": u[k] for i, u in enumerate(units)}
                with _naming(log):
                    log.histograms(state.step, vectors)

    def diverged(self, state: LoopState, k: int, at: int) -> None:
        """Member k's loss became non-finite at iteration ``at``: its summary, and a NaN for
        each of its metrics there, so that its curves end there and TensorBoard's HParams shows
        no value from before it as the member's result."""
        log = self.logs[k]
        if log is None:
            return
        final = self._summary(state, k, "diverged", diverged_at=at)
        self._write(state, k, {**self.position(state, at), **dict.fromkeys(final, math.nan)})
        tqdm.write(
            f"member {self.out.members[k]['id']} diverged (non-finite loss) at iteration {at}; "
            "the other members go on"
        )

    def finish(self, state: LoopState, final: dict[str, list[float]]) -> None:
        """The final evaluation's record (if any) and the summary of every live member."""
        for k, log in enumerate(self.logs):
            if log is None or not state.alive[k]:
                continue
            if final:
                values = {name: v[k] for name, v in final.items()}
                self._write(state, k, {**self.position(state, state.step), **values})
            self._summary(state, k, "finished", diverged_at=None)

    def close(self, quiet: bool) -> None:
        """Close every member log; a failure is reported unless another error is on its way."""
        error = None
        for log in self.logs:
            if log is None:
                continue
            try:
                log.close()
            except OSError as err:
                error = error or storage_error(err, log.metrics_path)
        if error is not None and not quiet:
            raise error

    def position(self, state: LoopState, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "epoch": round(step / self.steps_per_epoch, 6),
            "images": step * self.batch_size,
            "wall_time": round(state.wall_time, 3),
        }

    def _summary(
        self, state: LoopState, k: int, status: str, diverged_at: int | None
    ) -> dict[str, float]:
        """Write summary.json and the dashboard file; returns the last value of each metric."""
        log, provenance = self.logs[k], self.out.provenance
        final = dict(state.final[k])
        log.write_json(
            "summary.json",
            {
                "status": status,
                "diverged_at_step": diverged_at,
                "final": final,
                "steps": state.step,
                "wall_time_s": round(state.wall_time, 3),
                "member": self.out.members[k],
                **provenance,
            },
        )
        log.dashboard(provenance, status)  # the HParams session's final status
        return final

    def _write(self, state: LoopState, k: int, record: dict[str, Any]) -> None:
        log = self.logs[k]
        with _naming(log):
            log.log(record)
        state.final[k].update({key: v for key, v in record.items() if "/" in key})


@contextlib.contextmanager
def _naming(log: FencedLog) -> Iterator[None]:
    """A full disk names no file: the error names the member's log."""
    try:
        yield
    except OSError as err:
        raise storage_error(err, log.metrics_path) from None


def _last_values(log: FencedLog | None) -> dict[str, float]:
    """The last value of each metric in a member's log as a resumed run left it (for a
    checkpoint from before the loop's state carried them)."""
    final: dict[str, float] = {}
    if log is not None and log.metrics_path.exists():
        for line in log.metrics_path.read_text().splitlines():
            record = json.loads(line)
            final.update({key: v for key, v in record.items() if "/" in key})
    return final
