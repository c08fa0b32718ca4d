"""`make bench`: the suite's training step against a plain reference loop, its options, and
ELU's own cost, for every paper model, in one run.

For each model it times (after a warm-up) the suite's trainer on synthetic data of the real
shapes, and a reference loop written here: a torchvision ``DataLoader`` over uint8 images served
per sample as torchvision's MNIST and CIFAR10 classes serve them (``Image.fromarray`` and
transforms), one model, fp32. It prints images/s, the ratio, and the projected wall time of each
experiment's full paper protocol on this machine, its ratio to the protocol's floor (its
arithmetic at the measured fp32 GEMM peak) and the share of that peak the suite reaches, and
writes the same to ``results/bench/<machine>.md``. Then, per model:

- the options, each a full trainer run: bf16 and tf32 (they change the mathematics), channels
  first (NCHW) against the configs' channels-last, CUDA graphs (compile, reduce-overhead);
- ELU against ReLU: the paper population with every member's unit set to ELU, and to ReLU, its
  training step (batch, forward, loss, backward, SGD) timed in alternating blocks, best block of
  each, so that drifting load hits both alike;
- for the 11-layer CNN, the first K members of a sweep chunk trained one net after another
  (``MemberList``) and as one stacked net of grouped convolutions (``StackedConvNets``).

A member that diverges (non-finite loss) or a measurement that fails is reported as such in its
cell, and the bench goes on; the report is rewritten after every model, so a bench stopped by a
time limit leaves the models it finished. ``--profile FILE`` writes a torch.profiler table of the
11-layer CNN's step in fp32, tf32 and bf16 instead.

    python scripts/bench.py [--quick] [--device cpu|cuda] [--only cnn11,cnn18,spp,mlp,ae]
        [--unit-rounds 3] [--cnn-members 1,2,4] [--override KEY=VALUE ...] [--out FILE]
    python scripts/bench.py --device cuda --profile FILE
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from hydra import compose, initialize_config_dir
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import VisionDataset

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_report import cell, fmt_time, num, report  # noqa: E402

from elurepro import assemble  # noqa: E402
from elurepro.activations import build_activation, parse_activation  # noqa: E402
from elurepro.data.augment import pad_crop_flip  # noqa: E402
from elurepro.data.stream import Split, TensorStream  # noqa: E402
from elurepro.errors import one_line  # noqa: E402
from elurepro.members import MemberSpec  # noqa: E402
from elurepro.models.convnet import StackConvNet, with_classes  # noqa: E402
from elurepro.models.mlp import StackedLinear  # noqa: E402
from elurepro.models.stacked_cnn import StackedConvNets  # noqa: E402
from elurepro.runlog import device_name, has_native_bf16  # noqa: E402
from elurepro.tasks import build_task  # noqa: E402
from elurepro.trainer.optimizer import sgd  # noqa: E402

R = TypeVar("R")


@dataclass(frozen=True)
class Case:
    key: str
    experiment: str
    overrides: tuple[str, ...]
    image_shape: tuple[int, ...]
    classes: int
    batch: int
    protocol_images: float  # member-images of the full paper protocol
    protocol_note: str
    # A smaller batch on CPUs, where one paper batch of the model takes minutes; the report
    # says which batch was timed.
    cpu_batch: int | None = None
    reference: bool = True  # whether the plain reference loop is timed

    @property
    def conv(self) -> bool:
        return len(self.image_shape) == 3 and self.image_shape[0] == 3


CASES = [
    Case(
        "mlp",
        "mnist_meanact",
        (),
        (1, 28, 28),
        10,
        64,
        15 * 300 * 50_000,
        "15 members x 300 epochs x 50k images",
    ),
    Case(
        "ae",
        "mnist_autoencoder",
        (),
        (1, 28, 28),
        10,
        64,
        16 * 500 * 60_000,
        "16 members x 500 epochs x 60k images",
    ),
    Case(
        "cnn11",
        "cifar100_11layer",
        ("data=cifar100",),
        (3, 32, 32),
        100,
        100,
        80 * 165_000 * 100,
        "80 runs x 165k iterations x 100 images",
    ),
    Case(
        "cnn18",
        "cifar_18layer",
        ("data=cifar100",),
        (3, 32, 32),
        100,
        100,
        2 * 205_000 * 100,
        "2 data sets x 205k iterations x 100 images",
    ),
    Case(
        "spp",
        "imagenet_15layer_spp",
        (),
        (3, 224, 224),
        1000,
        128,
        2 * 250_000 * 128,
        "2 runs x 250k iterations x 128 images",
        cpu_batch=8,
        reference=False,  # ImageNet's loader is timed by scripts/bench_imagenet_loader.py
    ),
]
BY_KEY = {c.key: c for c in CASES}

# Timed steps per measurement, by model size, and per block of the ELU / ReLU comparison.
STEPS = {
    "cpu": {"mlp": 300, "ae": 60, "cnn11": 40, "cnn18": 6, "spp": 2},
    "cuda": {"mlp": 1000, "ae": 500, "cnn11": 200, "cnn18": 30, "spp": 8},
}
UNIT_STEPS = {
    "cpu": {"mlp": 100, "ae": 20, "cnn11": 10, "cnn18": 2, "spp": 1},
    "cuda": {"mlp": 300, "ae": 150, "cnn11": 60, "cnn18": 10, "spp": 3},
}
REFERENCE_STEPS_CUDA = {"mlp": 100, "ae": 60, "cnn11": 30, "cnn18": 10}  # its loader is slow


class Diverged(RuntimeError):
    """A member's loss became non-finite before the timed steps were over."""


def load_cfg(case: Case, device: str, extra: Sequence[str] = ()):
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        return compose(
            "train",
            [
                f"experiment={case.experiment}",
                *case.overrides,
                f"device={device}",
                "progress=false",
                *extra,
            ],
        )


def batch_size(case: Case, device: torch.device) -> int:
    return case.cpu_batch if device.type == "cpu" and case.cpu_batch else case.batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attempt(measure: Callable[[], R]) -> R | str:
    """The measurement, or one line saying why there is none: the bench goes on either way."""
    try:
        return measure()
    except (KeyboardInterrupt, SystemExit):
        raise
    except Diverged as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - any failure of one cell is reported in that cell
        if isinstance(err, torch.cuda.OutOfMemoryError):
            torch.cuda.empty_cache()
        return f"failed: {type(err).__name__}: {one_line(err)[:160]}"


def count_macs(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Multiply-accumulates of a population's conv / linear layers on x (the paper's §8 count),
    and those of its first layer alone (whose input needs no gradient)."""
    total = 0
    first = None

    def hook(module, inputs, output):
        nonlocal total, first
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # in/groups * kh * kw
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features
        elif isinstance(module, StackedLinear):
            total += output.numel() * module.weight.shape[1]
        if first is None and total:
            first = total

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model.forward_shared(x)
    for h in handles:
        h.remove()
    return total, first or 0


def gemm_peak(device: torch.device) -> float:
    """This machine's fp32 matrix-product rate in GFLOP/s, on one large square product: the
    ceiling for any trainer whose time goes to matrix products."""
    n = 4096 if device.type == "cuda" else 2048
    reps = 10 if device.type == "cuda" else 2
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(5 if device.type == "cuda" else 3):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - start))
    return best / 1e9


def conv_rate(device: torch.device) -> float:
    """GFLOP/s of one large fp32 3x3 convolution (oneDNN / cuDNN), next to the GEMM peak.

    On AMD CPUs MKL's sgemm takes a path that oneDNN's AVX-512 convolutions outrun (about 2.3x
    on a 2-core Zen 5 EPYC, both measured here): a CNN can then exceed 100 % of "GEMM peak"."""
    n = 64 if device.type == "cuda" else 16
    x = torch.randn(n, 256, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device).contiguous(memory_format=torch.channels_last)
    flop = 2 * n * 32 * 32 * 256 * 256 * 9
    F.conv2d(x, w, padding=1)
    best = 0.0
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        F.conv2d(x, w, padding=1)
        sync(device)
        best = max(best, flop / (time.perf_counter() - start))
    return best / 1e9


def cpu_isa() -> str:
    """'avx512-bf16', 'avx512' or 'avx2' (or 'other') from /proc/cpuinfo's flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "other"
    flags = set(
        next(
            (ln.split(":", 1)[1] for ln in text.splitlines() if ln.startswith("flags")), ""
        ).split()
    )
    if "avx512f" in flags:
        return "avx512-bf16" if "avx512_bf16" in flags else "avx512"
    return "avx2" if "avx2" in flags else "other"


# ------------------------------------------------------------------ synthetic data
def synthetic_split(case: Case, n: int) -> Split:
    """n images of the case's shape (in [0, 1] for the MNIST models, whose task reads them as
    pixel targets; flat vectors for the fully connected nets) and random labels."""
    if case.conv:
        x = torch.randn(n, *case.image_shape)
    else:
        x = torch.rand(n, *case.image_shape).flatten(1)
    return Split(x, torch.randint(0, case.classes, (n,)))


def pool_size(batch: int, steps: int) -> int:
    """Images held for a measurement: one pass over them, at most 2000 (epochs wrap around)."""
    return max(2 * batch, min(batch * steps, 2000))


def augment_of(case: Case):
    """The stream's augmentation: CIFAR's pad-4 crop and flip; the ImageNet loader crops on the
    host, so its batches arrive as they are."""
    if case.conv and case.image_shape[1] == 32:
        return lambda xb, g: pad_crop_flip(xb, 4, g)
    return None


def timed_members(case: Case, cfg) -> list[MemberSpec]:
    """The members one measurement trains: the whole population for the fully connected nets,
    the first member for the conv nets (their paper configs train one per process)."""
    members = assemble.build_members(cfg)
    return members if not case.conv else members[:1]


# ------------------------------------------------------------------ the suite's trainer
def suite_rate(
    case: Case, device: torch.device, steps: int, warmup: int, extra: Sequence[str] = ()
) -> float:
    """Member-images/s of the suite's trainer over at least ``steps`` steps after ``warmup``.

    Raises ``Diverged`` when every member diverged before the last timed step (the trainer stops
    such a population); members that diverge alone leave the others' log points to time."""
    batch = batch_size(case, device)
    cfg = load_cfg(case, device.type, [f"train.batch_size={batch}", *extra])
    members = timed_members(case, cfg)
    # Log points (with their wall times) every `warmup` steps, the last at the end: the timed
    # steps are a whole number of log intervals.
    total = warmup * (1 + -(-steps // warmup))
    split = synthetic_split(case, pool_size(batch, total))
    train = split.to(device)
    small = Split(split.x[: min(200, batch)], split.y[: min(200, batch)]).to(device)
    data = assemble.DataBundle(
        train,
        {"test": small},
        {},
        None,
        augment_of(case),
        {"name": "synthetic", "official": False, "fingerprint": "-", "num_classes": case.classes},
    )
    cfg.budget.max_steps = total
    cfg.train.act_every = None
    with tempfile.TemporaryDirectory() as tmp:
        trainer = assemble.build_trainer(cfg, members, data, device, Path(tmp))
        # Evaluation and its checkpoint only at the start and the end, outside the timed steps.
        trainer.loop.log_every = warmup
        trainer.loop.eval_every = total
        trainer.loop.total_steps = total
        if trainer.run() == "interrupted":  # SIGINT / SIGTERM reached the trainer
            raise KeyboardInterrupt
        folders = [Path(tmp) / "members" / m.id for m in members]
        times = log_times(folders)
        if warmup not in times or total not in times:
            why = divergence_note(folders, total) or f"the run stopped before step {total}"
            raise Diverged(f"{why}: not timed")
    return (total - warmup) * batch * len(members) / (times[total] - times[warmup])


def model_macs(case: Case, device: torch.device) -> tuple[int, int]:
    """(all, first-layer) MACs per member-image of the model's timed population."""
    cfg = load_cfg(case, device.type)
    members = timed_members(case, cfg)
    pop = assemble.build_population(cfg, members, device, case.classes).eval()
    macs, first = count_macs(pop, synthetic_split(case, 2).x.to(device))
    return macs // (2 * len(members)), first // (2 * len(members))


def log_times(folders: Sequence[Path]) -> dict[int, float]:
    """{step: wall time} of the training log points with a finite loss, from every member that
    logged one (all members of a population log the same wall time at a log point; a diverged
    member stops there)."""
    times: dict[int, float] = {}
    for folder in folders:
        path = folder / "metrics.jsonl"
        if path.exists():
            for record in map(json.loads, path.read_text().splitlines()):
                if math.isfinite(record.get("train/loss", math.nan)):
                    times.setdefault(record["step"], record["wall_time"])
    return times


def divergence_note(folders: Sequence[Path], total: int) -> str:
    """'diverged (elu-s0 at iteration 36 of 40)' from the members' summaries; '' if none did."""
    diverged = {}
    for folder in folders:
        path = folder / "summary.json"
        summary = json.loads(path.read_text()) if path.exists() else {}
        if summary.get("status") == "diverged":
            diverged[folder.name] = summary.get("diverged_at_step")
    if len(diverged) == 1:
        (member, at), *_ = diverged.items()
        return f"diverged ({member} at iteration {at} of {total})"
    if diverged:
        first = min(at for at in diverged.values() if at is not None)
        return (
            f"diverged ({len(diverged)} of {len(folders)} members, the first at iteration "
            f"{first} of {total})"
        )
    return ""


# ------------------------------------------------------------------ the bare training step
@dataclass
class StepRig:
    """One population with its optimizer, stream and task: the trainer's step, nothing else."""

    pop: nn.Module
    opt: torch.optim.Optimizer
    stream: TensorStream
    task: object
    autocast: bool = False

    def run(self, start: int, steps: int) -> None:
        """Steps start .. start + steps - 1: batch, forward, loss, backward, SGD, as
        ``Trainer._step`` does them (its log accumulation aside)."""
        amp = (
            torch.autocast(self.stream.device.type, dtype=torch.bfloat16)
            if self.autocast
            else contextlib.nullcontext()
        )
        for step in range(start, start + steps):
            if hasattr(self.pop, "seed_dropout"):
                self.pop.seed_dropout(step)
            x, y = self.stream.batch(step)
            with amp:
                out = self.pop(x)
            losses = self.task.loss(out, x, y)
            self.opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.opt.step()


def step_rig(
    cfg, case: Case, members: Sequence[MemberSpec], device: torch.device, split: Split, pop=None
) -> StepRig:
    """The trainer's step for ``members`` (or the given population) on device-resident data."""
    pop = pop if pop is not None else assemble.build_population(cfg, members, device, case.classes)
    if cfg.execution.channels_last:
        pop.use_channels_last()
    pop.train()
    opt = sgd(pop, cfg.optim.momentum, cfg.optim.weight_decay)
    for group in opt.param_groups:
        group["lr"] = cfg.optim.lr
    stream = TensorStream(split, cfg.train.batch_size, [m.seed for m in members], augment_of(case))
    model = cfg.model
    task = build_task(
        model.task,
        top5=bool(model.get("top5", False)),
        pixel_reduction=model.get("pixel_reduction", "mean"),
    )
    return StepRig(pop, opt, stream, task, autocast=bool(cfg.execution.bf16))


def interleaved_step_times(
    rigs: dict[str, StepRig], device: torch.device, steps: int, rounds: int
) -> dict[str, float]:
    """Seconds per step of each rig: one untimed block each, then ``rounds`` rounds of one timed
    block of ``steps`` steps per rig in turn (all rigs see the same batches); the best block of
    each, which shared-machine noise can only lengthen."""
    best = {name: float("inf") for name in rigs}
    for rig in rigs.values():
        rig.run(0, steps)
    for r in range(rounds):
        for name, rig in rigs.items():
            sync(device)
            start = time.perf_counter()
            rig.run((r + 1) * steps, steps)
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def unit_step_times(
    case: Case, device: torch.device, steps: int, rounds: int, extra: Sequence[str] = ()
) -> dict[str, float]:
    """Seconds per training step of the paper population with every member's unit set to ELU,
    and to ReLU (same seeds, learning rates, BN, data)."""
    batch = batch_size(case, device)
    cfg = load_cfg(case, device.type, [f"train.batch_size={batch}", *extra])
    base = timed_members(case, cfg)
    split = synthetic_split(case, pool_size(batch, (rounds + 1) * steps)).to(device)
    rigs = {}
    for unit in ("elu", "relu"):
        members = [dataclasses.replace(m, activation=parse_activation(unit)) for m in base]
        rigs[unit] = step_rig(cfg, case, members, device, split)
    return interleaved_step_times(rigs, device, steps, rounds)


def population_rates(
    case: Case, device: torch.device, k: int, steps: int, warmup: int
) -> dict[str, float]:
    """Member-images/s of the first K members of a sweep chunk (seed-major, as
    ``population.max_members=K`` plans them: one seed, so one shared batch) trained as a
    ``MemberList`` and as ``StackedConvNets``: the trainer builds MemberLists only."""
    cfg = load_cfg(case, device.type, (f"population.max_members={k}",))
    members = assemble.plan_chunks(cfg)[0][:k]
    split = synthetic_split(case, pool_size(case.batch, steps + warmup)).to(device)
    rates = {}
    for label in ("MemberList", "stacked"):
        pop = assemble.build_population(cfg, members, device, case.classes)
        if label == "stacked":
            pop = StackedConvNets(list(pop.member_nets()), [m.seed for m in members]).to(device)
        rig = step_rig(cfg, case, members, device, split, pop)
        rig.run(0, warmup)
        sync(device)
        start = time.perf_counter()
        rig.run(warmup, steps)
        sync(device)
        rates[label] = steps * case.batch * k / (time.perf_counter() - start)
        del pop, rig
    return rates


# ------------------------------------------------------------------ the reference
def reference_model(case: Case) -> nn.Module:
    act = lambda: build_activation("elu")  # noqa: E731
    if not case.conv:
        sizes = (
            ([784] + [128] * 8 + [10])
            if case.key == "mlp"
            else [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
        )
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act())
        return nn.Sequential(*layers)
    cfg = load_cfg(case, "cpu")
    stacks = with_classes([list(s) for s in cfg.model.stacks], case.classes)
    return StackConvNet(stacks, 3, 32, act, list(cfg.model.dropout))


class ArrayImages(VisionDataset):
    """uint8 images served exactly as torchvision's MNIST and CIFAR10 classes serve theirs:
    ``Image.fromarray`` per sample, then the transform (those classes need real files)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        super().__init__(root="", transform=transform)
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        mode = "L" if self.images.ndim == 3 else "RGB"
        return self.transform(Image.fromarray(self.images[i], mode=mode)), int(self.labels[i])


def reference_rate(case: Case, device: torch.device, steps: int, warmup: int) -> float:
    """Images/s of a plain loop: DataLoader + per-sample transforms, one model, fp32."""
    if case.conv:
        transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor()])
    else:
        transform = T.ToTensor()
    size = case.batch * (steps + warmup)
    rng = np.random.default_rng(0)
    c, h, w = case.image_shape
    images = rng.integers(0, 256, (size, h, w) if c == 1 else (size, h, w, c), dtype=np.uint8)
    dataset = ArrayImages(images, rng.integers(0, case.classes, size), transform)
    loader = DataLoader(
        dataset,
        batch_size=case.batch,
        shuffle=True,
        num_workers=0,
        pin_memory=device.type == "cuda",
    )
    model = reference_model(case).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.BCEWithLogitsLoss() if case.key == "ae" else nn.CrossEntropyLoss()
    start = None
    for i, (xb, yb) in enumerate(loader):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        xb, yb = xb.to(device), yb.to(device)
        out = model(xb)
        loss = loss_fn(out, xb.flatten(1)) if case.key == "ae" else loss_fn(out, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(device)
    return steps * case.batch / (time.perf_counter() - start)


# ------------------------------------------------------------------ one model
def options(case: Case, device: torch.device) -> list[tuple[str, tuple[str, ...]]]:
    """The options timed for a model, as (label, overrides): full trainer runs each."""
    out: list[tuple[str, tuple[str, ...]]] = []
    if case.key in ("cnn11", "cnn18"):
        out.append(("bf16", ("execution.bf16=true",)))
        if device.type == "cuda":
            out.append(("tf32", ("execution.tf32=true",)))
        out.append(("nchw", ("execution.channels_last=false",)))
    if device.type == "cuda" and case.key == "cnn11":  # forward and backward as CUDA graphs
        out.append(("graphs", ("execution.compile=true", "execution.compile_mode=reduce-overhead")))
    return out


def measure(
    case: Case,
    device: torch.device,
    n: int,
    quick: bool,
    peak: float,
    unit_steps: int,
    unit_rounds: int,
    overrides: Sequence[str] = (),
) -> dict:
    """Reference, suite (fp32), its options and ELU / ReLU step times of one model."""
    warm = 3 if quick else max(2, n // 5)
    row: dict = {"case": case, "batch": batch_size(case, device), "steps": n}
    ref_steps = REFERENCE_STEPS_CUDA.get(case.key, n) if device.type == "cuda" and not quick else n
    row["ref"] = (
        attempt(lambda: reference_rate(case, device, ref_steps, max(2, ref_steps // 5)))
        if case.reference
        else None
    )

    def suite(extra: Sequence[str]) -> float:
        return suite_rate(case, device, n, warm, [*overrides, *extra])

    row["suite"] = attempt(lambda: suite(()))
    row["options"] = {}
    for label, extra in options(case, device):
        if label == "bf16" and not has_native_bf16(device):
            row["options"][label] = "skipped: no native bf16"  # emulated: tens of times slower
            continue
        row["options"][label] = attempt(lambda extra=extra: suite(extra))
    row["units"] = (
        attempt(lambda: unit_step_times(case, device, unit_steps, unit_rounds, overrides))
        if unit_rounds
        else None
    )
    macs = attempt(lambda: model_macs(case, device))
    if isinstance(macs, tuple):
        # Training: forward, weight gradient and input gradient, 2 FLOP per MAC each; the first
        # layer's input needs no gradient.
        row["macs"] = macs[0]
        flops = 6 * macs[0] - 2 * macs[1]
        # The protocol's arithmetic at this machine's large-GEMM rate: no fp32 trainer beats it.
        row["floor_s"] = case.protocol_images * flops / (peak * 1e9)
        if num(row["suite"]):
            row["suite_gflops"] = row["suite"] * flops / 1e9
            row["peak_share"] = row["suite_gflops"] / peak
    print(summary_line(row), flush=True)
    return row


def summary_line(row: dict) -> str:
    case = row["case"]
    parts = [f"{case.key:6s} reference {cell(row['ref'])} img/s", f"suite {cell(row['suite'])}"]
    if num(row["suite"]) and num(row["ref"]):
        parts[-1] += f" ({row['suite'] / row['ref']:.2f}x)"
    if num(row["suite"]):
        parts.append(f"protocol {fmt_time(case.protocol_images / row['suite'])}")
    for label, value in row["options"].items():
        parts.append(f"{label} {cell(value)}")
    units = row["units"]
    if isinstance(units, dict):
        parts.append(f"ELU/ReLU step {units['elu'] / units['relu']:.3f}x")
    elif units is not None:
        parts.append(f"ELU/ReLU {units}")
    return " | ".join(parts)


def measure_populations(
    case: Case, device: torch.device, n: int, quick: bool, ks: list[int]
) -> dict[int, dict[str, float] | str]:
    """MemberList vs stacked population of K members, fp32, for each K."""
    warm = 1 if quick else max(2, n // 5)
    out: dict[int, dict[str, float] | str] = {}
    for k in ks:
        try:
            rates = population_rates(case, device, k, n, warm)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - reported in its row, the rest goes on
            out[k] = f"failed: {type(err).__name__}: {one_line(err)[:160]}"
            continue
        out[k] = rates
        print(
            f"{case.key:6s} K={k} members: one after another {rates['MemberList']:8.1f} "
            f"member-img/s | stacked (grouped convs) {rates['stacked']:8.1f} member-img/s "
            f"({rates['stacked'] / rates['MemberList']:.2f}x)",
            flush=True,
        )
    return out


# ------------------------------------------------------------------ profile
def profile_table(device: torch.device, steps: int) -> str:
    """torch.profiler's table of the 11-layer CNN's training step (one member, the trainer's
    step) in fp32, tf32 and bf16: where each precision's time goes."""
    from torch.profiler import ProfilerActivity, profile

    case = BY_KEY["cnn11"]
    activities = [ProfilerActivity.CPU]
    sort = "self_cpu_time_total"
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort = "self_cuda_time_total"
    out = [f"# Profile of the 11-layer CNN's training step, {device_name(device)}", ""]
    for label, extra in (
        ("fp32", ()),
        ("tf32", ("execution.tf32=true",)),
        ("bf16", ("execution.bf16=true",)),
    ):
        if label == "tf32" and device.type != "cuda":
            continue
        cfg = load_cfg(case, device.type, extra)
        members = timed_members(case, cfg)
        split = synthetic_split(case, pool_size(case.batch, 2 * steps)).to(device)
        rig = step_rig(cfg, case, members, device, split)
        with precision(device, tf32=label == "tf32"):
            rig.run(0, steps)  # warm-up: cuDNN's autotuning, allocator
            sync(device)
            start = time.perf_counter()
            with profile(activities=activities) as prof:
                rig.run(steps, steps)
                sync(device)
            seconds = (time.perf_counter() - start) / steps
        out += [
            f"## {label}: {case.batch / seconds:.0f} images/s under the profiler ({steps} steps)",
            "",
            "```",
            prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70),
            "```",
            "",
        ]
        del rig
    return "\n".join(out)


@contextlib.contextmanager
def precision(device: torch.device, tf32: bool) -> Iterator[None]:
    """TF32 for cuDNN and matmuls inside, as the trainer sets it; faithful fp32 after."""
    if device.type != "cuda":
        yield
        return
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--only", default="mlp,ae,cnn11,cnn18,spp", help="models, measured in the order given"
    )
    parser.add_argument("--quick", action="store_true", help="few steps: checks the script runs")
    parser.add_argument("--out", default=None, help="default results/bench/<machine>.md")
    parser.add_argument(
        "--cnn-members",
        default="1,2,4",
        help="K values for the 11-layer CNN population comparison ('' to skip)",
    )
    parser.add_argument(
        "--unit-rounds",
        type=int,
        default=3,
        help="timed rounds of the ELU / ReLU comparison (0 to skip)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for every model's runs (repeatable), e.g. optim.lr=0.1",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="write the 11-layer CNN's step profile there, only"
    )
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)} in --only; known: {', '.join(BY_KEY)}")
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("highest")
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # faithful fp32 first; TF32 is a flagged option
        torch.backends.cudnn.benchmark = True
    if args.profile:
        Path(args.profile).write_text(profile_table(device, 3 if args.quick else 20))
        print(f"written: {args.profile}")
        return
    name = device_name(device)
    steps = dict(STEPS[device.type])
    unit_steps = dict(UNIT_STEPS[device.type])
    rounds = args.unit_rounds
    if args.quick:
        steps = {k: 2 for k in steps}
        unit_steps = {k: 1 for k in steps}
        rounds = min(rounds, 1)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    if device.type == "cpu":  # CPUs of one model name differ in vector units: say which
        slug += "-" + cpu_isa()
    out = Path(args.out) if args.out else REPO / "results" / "bench" / f"{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python scripts/bench.py", *(argv if argv is not None else sys.argv[1:])])
    rows: list[dict] = []
    gemm = gemm_peak(device)
    conv = conv_rate(device)
    print(
        f"fp32 GEMM peak here: {gemm:.0f} GFLOP/s (one 3x3 convolution: {conv:.0f} GFLOP/s)",
        flush=True,
    )
    ks = [int(k) for k in args.cnn_members.split(",") if k.strip()]
    meta = {"name": name, "device": device, "quick": args.quick, "gemm": gemm, "conv": conv}
    meta["command"] = command
    try:
        for key in keys:
            case = BY_KEY[key]
            rows.append(
                measure(
                    case,
                    device,
                    steps[key],
                    args.quick,
                    gemm,
                    unit_steps[key],
                    rounds,
                    args.override,
                )
            )
            if key == "cnn11" and ks:
                rows[-1]["populations"] = measure_populations(
                    case, device, max(2, steps[key] // 2), args.quick, ks
                )
            out.write_text(report(rows, meta))  # partial results survive a time limit
    except KeyboardInterrupt:
        print("interrupted: the report holds the models measured so far")
    out.write_text(report(rows, meta))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
