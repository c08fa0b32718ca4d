"""Per-member logs: metrics.jsonl (what the analysis reads), TensorBoard scalars, summary.json."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch.utils.tensorboard import SummaryWriter

from elurepro.checkpoint import write_json


class MemberLog:
    """One member's folder. ``resume_step`` drops records written after the last checkpoint."""

    def __init__(self, folder: Path, member: dict[str, Any], resume_step: int | None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "member.json", member)
        self.metrics_path = folder / "metrics.jsonl"
        if resume_step is None:
            # A fresh start: whatever an abandoned attempt left here is not this run's.
            self.metrics_path.unlink(missing_ok=True)
            for old in folder.glob("events.out.tfevents.*"):
                old.unlink()
        else:
            _truncate_after(self.metrics_path, resume_step)
        # purge_step makes TensorBoard drop events from the lost stretch after a crash.
        self.tb = SummaryWriter(
            str(folder), purge_step=None if resume_step is None else resume_step + 1
        )
        self._file = self.metrics_path.open("a")

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        step = record["step"]
        for key, value in record.items():
            if "/" in key or key == "lr":
                self.tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._file.close()
        self.tb.close()


def _truncate_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash; everything after it is lost anyway
        if record.get("step", math.inf) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    write_json(folder / "summary.json", summary)


@cache
def git_commit() -> str:
    """The commit of the code that ran, with '+dirty' if it had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # A copy of the code without its .git (a batch node, a container) can be told its commit.
        return os.environ.get("ELUREPRO_GIT_COMMIT", "unknown")
    return head + ("+dirty" if dirty else "")


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware here (AVX512-BF16 / AMX, or a CUDA card
    of compute capability 8.0+); without it the CPU emulates them, far slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    try:  # a private oneDNN query: absent from some builds, where we assume no support
        return torch.backends.mkldnn.is_available() and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


@cache
def _cpu_model() -> str:
    """The CPU model ("AMD EPYC", ...) from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
