"""`make bench-gpu` / `make curves-gpu` (scripts/gpu_check.sh), run here with a stand-in for Python
that records what it is asked to run: which steps each plan runs, and what comes back."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Records its arguments; as the learns command, it leaves a run with a checkpoint in --runs.
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
if [ "$1 $2" = "-m elurepro.learns" ]; then
  while [ $# -gt 0 ]; do [ "$1" = --runs ] && runs=$2; shift; done
  mkdir -p "$runs/run"; echo '{"step": 1}' > "$runs/run/metrics.jsonl"
  echo weights > "$runs/run/checkpoint.pt"
fi
"""


def run_check(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls"
    environ = os.environ | {"PY": str(fake), "CALLS": str(calls), "OUT": str(tmp_path / "out")}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh"],
        cwd=REPO,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_the_curves_plan_trains_both_cifar_nets_elu_and_relu_for_5000_iterations(tmp_path):
    done, calls = run_check(tmp_path, PLAN="curves")
    assert done.returncode == 0, done.stderr
    learns = [c for c in calls if c.startswith("-m elurepro.learns")]
    assert [c.split("--only ")[1].split()[0] for c in learns] == [
        "cifar100_11layer",
        "cifar_18layer",
    ]
    for c in learns:
        assert "--steps 5000 --device cuda" in c
        assert "members.activations=[elu,relu] --set members.batchnorm=[false]" in c
        assert "train.eval_every=250" in c
    assert not any(c.startswith("scripts/bench") for c in calls)  # no benchmark in this plan
    with tarfile.open(tmp_path / "out" / "learns-runs.tar.gz") as tar:
        names = tar.getnames()
    assert "learns/run/metrics.jsonl" in names and not any(n.endswith(".pt") for n in names)


def test_the_bench_plan_keeps_its_steps_and_600_iterations(tmp_path):
    done, calls = run_check(tmp_path, BUDGET_S="100000")
    assert done.returncode == 0, done.stderr
    assert calls[1].startswith("scripts/bench.py --device cuda")
    learns = [c for c in calls if c.startswith("-m elurepro.learns")]
    assert len(learns) == 3 and all("--steps 600 " in c for c in learns)
    assert "--only cifar_18layer,cifar_18layer-relu " in learns[1]  # Table 1's ELU, and ReLU
    assert not any("members.activations" in c for c in learns)


def test_an_unknown_plan_is_one_line(tmp_path):
    done, calls = run_check(tmp_path, PLAN="curve")
    assert done.returncode == 2 and calls == []
    assert done.stderr.strip() == "PLAN=curve: expected bench or curves"
