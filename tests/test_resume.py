"""A run killed hard (or stopped by a signal) and started again ends as if never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = [
    "experiment=mnist_meanact",
    "budget=smoke",
    "budget.max_steps=400",
    "progress=false",
    "members.activations=[elu,relu]",
    "budget.max_seeds=1",
]


def _command(runs: Path) -> list[str]:
    return [sys.executable, "-m", "elurepro.train", *ARGS, f"runs_dir={runs}"]


def _metrics(runs: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(runs.rglob("metrics.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        out[path.parent.name] = [{k: v for k, v in r.items() if k != "wall_time"} for r in records]
    return out


def _wait_for_checkpoint_after_start(runs: Path, proc: subprocess.Popen, timeout: float = 240):
    """Until the first checkpoint after step 0 exists (the record of step 100 is logged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in runs.rglob("metrics.jsonl"):
            if '"step": 100,' in path.read_text():
                return
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint within the time limit")


@pytest.mark.parametrize(
    "sig",
    [signal.SIGKILL, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
    ids=["kill-9", "ctrl-c"],
)
def test_interrupted_run_continues_to_identical_metrics(sig, mnist_root, tmp_path):
    env = {**os.environ, "ELUREPRO_DATA": str(mnist_root)}
    whole = tmp_path / "whole"
    done = subprocess.run(_command(whole), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        _command(cut), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_checkpoint_after_start(cut, proc)
    time.sleep(0.2)  # let it run past the checkpoint, so that work is lost and redone
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert not list(cut.rglob("summary.json")), "the run finished before the interruption"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Run the same command again" in out

    again = subprocess.run(_command(cut), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len(list(cut.rglob("summary.json"))) == 2
    assert _metrics(cut) == _metrics(whole)
