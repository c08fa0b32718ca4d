"""The benchmarks survive what they meet: a member that diverges, a step that hangs."""

from __future__ import annotations

import importlib.util
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elurepro.data.cifar import load_cifar
from tests.cifar_files import PER_FILE, write_cifar10

REPO = Path(__file__).resolve().parent.parent


def _script(name: str):
    """A module of scripts/, imported as its own name (its dataclasses look themselves up)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_suite_rate_reports_a_diverged_population():
    bench = _script("bench")
    with pytest.raises(bench.Diverged, match=r"diverged \(15 of 15 members, the first at "):
        bench.suite_rate(bench.BY_KEY["mlp"], torch.device("cpu"), 2, 2, ["optim.lr=1e30"])


@pytest.mark.slow
def test_a_diverged_population_is_reported_and_the_next_model_measured(tmp_path):
    out = tmp_path / "bench.md"
    # A learning rate the MLPs do not survive (their loss is non-finite within a few steps);
    # the autoencoder's (BCE on logits) stays finite, so the bench measures it after them.
    argv = ["--quick", "--device", "cpu", "--only", "mlp,ae", "--cnn-members", "", "--unit-rounds"]
    _script("bench").main([*argv, "0", "--override", "optim.lr=1e30", "--out", str(out)])
    text = out.read_text()
    rows: dict[str, str] = {}  # the first row of each model: the main table's
    for line in text.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0][2:], line)
    found = re.search(r"diverged \((\d+) of (\d+) members, the first at iteration (\d+) of "
                      r"(\d+)\): not timed", rows["mlp"])  # fmt: skip
    assert found, rows["mlp"]
    diverged, total, first, steps = map(int, found.groups())
    assert diverged == total == 15 and 1 <= first <= steps
    assert float(rows["ae"].split(" | ")[4]) > 0  # its suite img/s


def test_the_elu_relu_step_loop_goes_on_through_non_finite_losses():
    bench = _script("bench")
    case = bench.BY_KEY["mlp"]
    times = bench.unit_step_times(case, torch.device("cpu"), 2, 1, ["optim.lr=1e30"])
    assert set(times) == {"elu", "relu"} and all(t > 0 for t in times.values())


STUB = """#!/usr/bin/env bash
# Stands in for python: every step writes its --out / --profile file; the bench then hangs.
out=""
prev=""
for a in "$@"; do
  case $prev in --out|--profile) out=$a ;; esac
  prev=$a
done
[ "$1" = "-c" ] && exit 0
[ -n "$out" ] && echo "partial" > "$out"
case "$*" in *scripts/bench.py*--only*) exec sleep 300 ;; esac
exit 0
"""


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
def test_gpu_check_cuts_a_hanging_step_and_leaves_at_most_eight_files(tmp_path):
    stub = tmp_path / "python"
    stub.write_text(STUB)
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    out = tmp_path / "out"
    env = {**os.environ, "PY": str(stub), "OUT": str(out), "BUDGET_S": "16", "MIN_STEP_S": "1"}
    start = time.monotonic()
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    elapsed = time.monotonic() - start
    log = (out / "gpu_check.log").read_text()
    assert done.returncode == 0, done.stderr
    assert elapsed < 16 + 10, log  # the budget, plus the kill grace of the hanging step
    assert re.search(r"== bench: stopped at its \d+ s limit", log), log
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8
    # Every step after the hanging one ran and wrote its file.
    assert {"bench.md", "e2e.md", "profile.md", "learns-cnn11.md"} <= set(files), files


@pytest.mark.filterwarnings("ignore:.*checksums differ")
def test_the_gpu_payload_cifar_subset_loads_with_the_suite_loader(tmp_path):
    images, labels = write_cifar10(tmp_path / "full")
    dest = tmp_path / "subset" / "cifar-10-batches-py"
    _script("gpu_payload").cifar10_subset(tmp_path / "full" / "cifar-10-batches-py", dest, 10)
    arrays = load_cifar(tmp_path / "subset", "cifar10", download=False)
    assert arrays.train_x.shape == (10, 3, 32, 32) and arrays.test_x.shape == (2, 3, 32, 32)
    # The first two images of each training file of the source, in order.
    first = [images[i * PER_FILE + j] for i in range(5) for j in range(2)]
    assert (arrays.train_x.reshape(10, -1).numpy() == first).all()
    assert arrays.train_y.tolist() == [labels[i * PER_FILE + j] for i in range(5) for j in range(2)]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*not the official release")
def test_e2e_times_the_training_command(mnist_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ELUREPRO_DATA", str(mnist_root))
    out = tmp_path / "e2e.md"
    variant = "eager=train.unit=step,train.log_every=10,train.eval_every=20,train.act_every=20"
    argv = ["--only", "mlp", "--device", "cpu", "--steps", "40", "--variant", variant]
    done = subprocess.run(
        [sys.executable, "scripts/bench_e2e.py", *argv, "--bench-steps", "10", "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = next(line for line in out.read_text().splitlines() if line.startswith("| eager |"))
    cells = row.split(" | ")
    rate, process = float(cells[1]), float(cells[4].removesuffix(" s"))
    # 30 steps of 15 x 64 images between the first and the last log point; they cannot have
    # taken longer than the whole command, nor have been logged at fewer than 4 points.
    assert 0 < 30 * 15 * 64 / rate < process and int(cells[5]) == 4
