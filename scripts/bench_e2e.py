"""The training command end to end against the bench's step rate: where the time between them goes.

For one model of ``scripts/bench.py`` it runs ``python -m elurepro.train`` (the paper config, its
first population: the 15 MLPs or 16 autoencoders, or one CNN member) for N iterations, in a
fresh folder, once per variant (eager; on a GPU also CUDA graphs), and reads the member's log:

- training rate: images between the first and the last training log point over the wall time
  between them (evaluations, checkpoints and log points inside count; start-up does not);
- first interval: the same from the start to the first log point (warm-up, cuDNN autotuning);
- process: the command's whole wall time (imports, data loading and preprocessing, start-up).

It also times the bench's step rate for the same model in this process, so that the gap
between the two is measured on one machine in one run.

    python scripts/bench_e2e.py --only cnn11 --steps 3000 [--device cuda] [--synthetic-data]
        [--variant graphs=execution.compile=true,execution.compile_mode=reduce-overhead]
        [--out FILE]

``--synthetic-data`` writes random images in CIFAR-100's file layout to a temporary data root
(the timing does not depend on the pixels) for machines without the data set.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench  # noqa: E402
from bench_report import cell, num  # noqa: E402

from elurepro.runlog import git_commit  # noqa: E402

GRAPHS = "execution.compile=true,execution.compile_mode=reduce-overhead"


@dataclass
class Run:
    variant: str
    status: int
    process_s: float
    train_rate: float | None = None  # member-images/s between the first and last training logs
    first_rate: float | None = None  # member-images/s from the start to the first training log
    log_points: int = 0
    note: str = ""


def train_overrides(case: bench.Case, device: str, steps: int, runs: Path) -> list[str]:
    """The paper config's first population, capped at ``steps`` iterations, into ``runs``."""
    cfg = bench.load_cfg(case, device)
    first = bench.timed_members(case, cfg)
    out = [
        f"experiment={case.experiment}",
        *case.overrides,
        f"device={device}",
        "budget=paper",
        f"budget.max_steps={steps}",
        f"runs_dir={runs}",
        "progress=false",
    ]
    if case.conv:  # one member: its unit, BN setting and seed
        m = first[0]
        unit = ",".join(
            [f"name:{m.activation.name}", *(f"{k}:{v}" for k, v in m.activation.params)]
        )
        out += [
            f"members.activations=[{{{unit}}}]",
            f"members.batchnorm=[{str(m.batchnorm).lower()}]",
            f"members.seeds=[{m.seed}]",
        ]
    return out


def rates(runs: Path) -> tuple[float | None, float | None, int]:
    """(training rate, first-interval rate, training log points) in member-images/s, from the
    first member's log (members of a population train in lockstep and log the same times)."""
    logs = sorted(runs.rglob("metrics.jsonl"))
    if not logs:
        return None, None, 0
    records = [json.loads(line) for line in logs[0].read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    if not train:
        return None, None, 0
    k = len(logs)
    first = k * train[0]["images"] / train[0]["wall_time"] if train[0]["wall_time"] else None
    if len(train) < 2:
        return None, first, len(train)
    a, b = train[0], train[-1]
    return k * (b["images"] - a["images"]) / (b["wall_time"] - a["wall_time"]), first, len(train)


def run_train(
    case: bench.Case, device: str, steps: int, variant: str, extra: list[str], env: dict
) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(tmp) / "runs"
        command = [
            sys.executable,
            "-m",
            "elurepro.train",
            *train_overrides(case, device, steps, runs),
            *extra,
        ]
        print("$ " + " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=bench.REPO, env=env)
        seconds = time.perf_counter() - start
        train_rate, first_rate, points = rates(runs)
        # A diverged member ends its log early: the rates then cover the steps before it.
        folders = [path.parent for path in runs.rglob("metrics.jsonl")]
        note = bench.divergence_note(folders, steps)
    if done.returncode:
        note = ", ".join(filter(None, [note, f"exit status {done.returncode}"]))
    return Run(variant, done.returncode, seconds, train_rate, first_rate, points, note)


def write_cifar100(root: Path, seed: int = 0) -> None:
    """Random images and labels in torchvision's CIFAR-100 layout (50k train, 10k test)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", 50_000), ("test", 10_000)):
        fine = rng.integers(0, 100, n)
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)
    meta = {
        "fine_label_names": [f"class{i}" for i in range(100)],
        "coarse_label_names": [f"super{i}" for i in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f, protocol=4)


def report(
    case: bench.Case, device: str, steps: int, bench_rates: dict, runs: list[Run], data: str
) -> str:
    bench_rate = next(iter(bench_rates.values()), None)
    lines = [
        f"# End to end: `python -m elurepro.train` ({case.experiment}) against the bench",
        "",
        f"- {steps} iterations, device {device}, data: {data}; one population "
        f"({'one member' if case.conv else case.protocol_note.split(' x ')[0]})",
        f"- torch {torch.__version__}, commit {git_commit()}, "
        f"date {time.strftime('%Y-%m-%d %H:%M')}",
        *(
            f"- bench step rate of the same model here, {how}: {cell(rate)} member-img/s "
            "(the trainer on synthetic tensors, no evaluation inside the timed steps)"
            for how, rate in bench_rates.items()
        ),
        "",
        "| variant | training rate member-img/s | x bench | first interval member-img/s | "
        "process wall time | log points | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        ratio = "-"
        if r.train_rate and num(bench_rate):
            ratio = f"{r.train_rate / bench_rate:.3f}x"
        lines.append(
            f"| {r.variant} | {cell(r.train_rate)} | {ratio} | {cell(r.first_rate)} | "
            f"{r.process_s:.1f} s | {r.log_points} | {r.note or 'ok'} |"
        )
    lines += [
        "",
        "Training rate: images between the first and the last training log point over the wall "
        "time between them, as the member's metrics.jsonl records it (evaluations, checkpoints "
        "and log points in between count). First interval: from the start of training to the "
        "first log point (warm-up). Process: the whole command (imports, data, preprocessing).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="cnn11", choices=list(bench.BY_KEY))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=OVERRIDES",
        help="a run with comma-separated overrides (repeatable), instead of the default runs: "
        f"eager, and on CUDA graphs={GRAPHS}",
    )
    parser.add_argument("--synthetic-data", action="store_true")
    parser.add_argument("--bench-steps", type=int, default=None, help="0 skips the bench rate")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    case = bench.BY_KEY[args.only]
    variants = [("eager", [])]
    if args.device.startswith("cuda"):
        variants.append(("graphs", GRAPHS.split(",")))
    if args.variant:
        variants = []
        for spec in args.variant:
            name, _, overrides = spec.partition("=")
            variants.append((name, [o for o in overrides.split(",") if o]))
    device = torch.device(args.device)
    n = args.bench_steps if args.bench_steps is not None else bench.STEPS[device.type][case.key]
    timed = lambda: bench.attempt(lambda: bench.suite_rate(case, device, n, max(2, n // 5)))  # noqa: E731
    bench_rates: dict[str, float | str] = {}
    if n and device.type == "cuda":
        # The bench autotunes cuDNN's algorithms (cudnn.benchmark); the trainer leaves torch's
        # default (off: a heuristic choice): both, so that the gap this makes is measured.
        torch.backends.cudnn.allow_tf32 = False
        for autotune in (True, False):
            torch.backends.cudnn.benchmark = autotune
            how = "cuDNN autotuned" if autotune else "cuDNN heuristics, as the trainer"
            bench_rates[how] = timed()
    elif n:
        bench_rates["bench"] = timed()
    env = dict(os.environ)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = "the data set under ELUREPRO_DATA"
        if args.synthetic_data:
            if case.key not in ("cnn11", "cnn18"):
                parser.error("--synthetic-data writes CIFAR-100 only (cnn11, cnn18)")
            write_cifar100(Path(tmp))
            env["ELUREPRO_DATA"] = tmp
            env["ELUREPRO_CACHE"] = str(Path(tmp) / "cache")
            data = "random images in CIFAR-100's layout (synthetic: timing only)"
        for name, overrides in variants:
            runs.append(run_train(case, args.device, args.steps, name, overrides, env))
            text = report(case, args.device, args.steps, bench_rates, runs, data)
            if args.out:  # rewritten after every run: a time limit leaves the runs finished
                Path(args.out).write_text(text)
    print(text)
    if args.out:
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
