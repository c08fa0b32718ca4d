"""Every write of a trainer into a member's folder, fenced by the claim it is made under.

A worker writes a member's folder only while it holds the member's claim (``store/claims.py``).
A worker paused for longer than the claim timeout (a suspended machine, a stalled NFS client, a
preempted VM, SIGSTOP) has its members taken over by another worker, and must write nothing
there once it runs again: no metrics line, TensorBoard event, summary or checkpoint. So each of
those writes calls the fence right before it lands, and ``FencedLog`` is the one way into a
member's folder: a ``MemberLog`` whose writes pass the fence first. TensorBoard events are
flushed inside the same call, so none is left queued for the event writer's thread to write
later. The checkpoint and the JSON files take the fence down to their atomic rename
(``checkpoint.atomic_write_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from elurepro.checkpoint import Fence, write_json
from elurepro.runlog import MemberLog


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
