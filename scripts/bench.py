"""`make bench`: the suite's trainer against a plain reference loop, side by side, in one run.

For each paper model it times (after a warm-up) the suite's training step on synthetic data of
the real shapes, and a reference loop written here: a torchvision ``DataLoader`` over uint8 images
served per sample as torchvision's MNIST and CIFAR10 classes serve them (``Image.fromarray`` and
transforms), one model, fp32. It prints images/s, the ratio, and the projected wall time of each
experiment's full paper protocol on this machine, its ratio to the protocol's floor (its
arithmetic at the measured fp32 GEMM peak) and the share of that peak the suite reaches, and
writes the same to ``results/bench/<machine>.md``. On CUDA it also reports achieved TFLOP/s.
For the 11-layer CNN it also trains the first K members of a sweep chunk both ways, one net after
another (``MemberList``, what the sweeps use) and as one stacked net of grouped convolutions
(``StackedConvNets``), for each K of ``--cnn-members``: the numbers that decide whether a sweep
should stack its members on this machine.

    python scripts/bench.py [--quick] [--device cpu|cuda] [--only mlp,ae,cnn11,cnn18]
        [--cnn-members 1,2,4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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

from elurepro import assemble  # noqa: E402
from elurepro.activations import build_activation  # noqa: E402
from elurepro.data.augment import pad_crop_flip  # noqa: E402
from elurepro.data.stream import Split, TensorStream  # noqa: E402
from elurepro.models.convnet import StackConvNet, with_classes  # noqa: E402
from elurepro.models.mlp import StackedLinear  # noqa: E402
from elurepro.models.stacked_cnn import StackedConvNets  # noqa: E402
from elurepro.runlog import device_name, git_commit, has_native_bf16  # noqa: E402
from elurepro.tasks import build_task  # noqa: E402
from elurepro.trainer import _sgd  # noqa: E402

# Dense peak TFLOP/s by card, for the utilisation column (vendor data sheets, SXM parts).
PEAKS = {
    "H100": {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "H200": {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}


@dataclass
class Case:
    key: str
    experiment: str
    overrides: tuple[str, ...]
    image_shape: tuple[int, ...]
    classes: int
    batch: int
    protocol_images: float  # member-images of the full paper protocol
    protocol_note: str


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
]


def load_cfg(case: Case, device: str, extra: tuple[str, ...] = ()):
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(5 if device.type == "cuda" else 3):
        sync(device)
        start = time.perf_counter()
        for _ in range(10 if device.type == "cuda" else 2):
            a @ b
        sync(device)
        best = max(
            best, (10 if device.type == "cuda" else 2) * 2 * n**3 / (time.perf_counter() - start)
        )
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


# ------------------------------------------------------------------ the suite
def suite_rate(
    case: Case, device: torch.device, steps: int, warmup: int, extra: tuple[str, ...] = ()
) -> tuple[float, tuple[int, int]]:
    """Member-images/s of the suite's trainer, and its (all, first-layer) MACs per member-image."""
    cfg = load_cfg(case, device.type, extra)
    members = assemble.build_members(cfg)
    if case.key in ("cnn11", "cnn18"):
        members = members[:1]  # CNN members train one per process in the paper configs
    n = max(case.batch * (steps + warmup), 2000)
    x = (
        torch.rand(n, *case.image_shape)
        if case.key in ("mlp", "ae")
        else torch.randn(n, *case.image_shape)
    )
    if case.key in ("mlp", "ae"):
        x = x.flatten(1)
    y = torch.randint(0, case.classes, (n,))
    train = Split(x, y).to(device)
    small = Split(x[:200], y[:200]).to(device)
    augment = (lambda xb, g: pad_crop_flip(xb, 4, g)) if case.key.startswith("cnn") else None
    data = assemble.DataBundle(
        train,
        {"test": small},
        {},
        None,
        augment,
        {"name": "synthetic", "official": False, "fingerprint": "-", "num_classes": case.classes},
    )
    total = warmup + steps
    cfg.budget.max_steps = total
    cfg.train.act_every = None
    with tempfile.TemporaryDirectory() as tmp:
        trainer = assemble.build_trainer(cfg, members, data, device, Path(tmp))
        # Log points (with their wall times) every `warmup` steps; evaluation and its checkpoint
        # only at the end, after the last timed step, so that neither is timed.
        trainer.loop.log_every = warmup
        trainer.loop.eval_every = total
        trainer.loop.total_steps = total
        if trainer.run() == "interrupted":  # SIGINT / SIGTERM reached the trainer
            raise KeyboardInterrupt
        records = [
            line
            for line in (Path(tmp) / "members" / members[0].id / "metrics.jsonl")
            .read_text()
            .splitlines()
        ]
    times = {r["step"]: r["wall_time"] for r in map(json.loads, records)}
    seconds = times[total] - times[warmup]
    rate = steps * case.batch * len(members) / seconds
    sample = x[:2].to(device)
    macs, first = count_macs(trainer.pop.eval(), sample)
    return rate, (macs // (2 * len(members)), first // (2 * len(members)))


def population_rates(
    case: Case, device: torch.device, k: int, steps: int, warmup: int
) -> dict[str, float]:
    """Member-images/s of the first K members of a sweep chunk (seed-major, as
    ``population.max_members=K`` plans them: one seed, so one shared batch) trained as a
    ``MemberList`` and as ``StackedConvNets``, with the trainer's step (stream batch, loss,
    zero_grad, backward, SGD) in a loop here: the trainer builds MemberLists only."""
    cfg = load_cfg(case, device.type, (f"population.max_members={k}",))
    members = assemble.plan_chunks(cfg)[0][:k]
    n = max(case.batch * (steps + warmup), 2000)
    x, y = torch.randn(n, *case.image_shape), torch.randint(0, case.classes, (n,))
    stream = TensorStream(
        Split(x, y).to(device),
        case.batch,
        [m.seed for m in members],
        lambda xb, g: pad_crop_flip(xb, 4, g),
    )
    task = build_task("classification")
    rates = {}
    for label in ("MemberList", "stacked"):
        pop = assemble.build_population(cfg, members, device, case.classes)
        if label == "stacked":
            pop = StackedConvNets(list(pop.member_nets()), [m.seed for m in members]).to(device)
        if cfg.execution.channels_last:
            pop.use_channels_last()
        pop.train()
        opt = _sgd(pop, cfg.optim.momentum, cfg.optim.weight_decay)
        for group in opt.param_groups:
            group["lr"] = cfg.optim.lr
        start = None
        for step in range(warmup + steps):
            if step == warmup:
                sync(device)
                start = time.perf_counter()
            if hasattr(pop, "seed_dropout"):
                pop.seed_dropout(step)
            xb, yb = stream.batch(step)
            out = pop(xb)
            losses = task.loss(out, xb, yb)
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
        sync(device)
        rates[label] = steps * case.batch * k / (time.perf_counter() - start)
        del pop, opt
    return rates


# ------------------------------------------------------------------ the reference
def reference_model(case: Case) -> nn.Module:
    act = lambda: build_activation("elu")  # noqa: E731
    if case.key in ("mlp", "ae"):
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
    if case.key.startswith("cnn"):
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


# ------------------------------------------------------------------ report
def fmt_time(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", default="mlp,ae,cnn11,cnn18")
    parser.add_argument("--quick", action="store_true", help="few steps: checks the script runs")
    parser.add_argument("--out", default=None, help="default results/bench/<machine>.md")
    parser.add_argument(
        "--cnn-members",
        default="1,2,4",
        help="K values for the 11-layer CNN population comparison ('' to skip)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("highest")
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False  # faithful fp32 first; TF32 is a flagged option
        torch.backends.cudnn.benchmark = True
    name = device_name(device)
    # Steps per measurement, by model size.
    steps = {"mlp": 300, "ae": 60, "cnn11": 40, "cnn18": 6}
    if device.type == "cuda":
        steps = {"mlp": 1000, "ae": 500, "cnn11": 200, "cnn18": 30}
    if args.quick:
        steps = {k: 2 for k in steps}
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    if device.type == "cpu":  # CPUs of one model name differ in vector units: say which
        slug += "-" + cpu_isa()
    out = Path(args.out) if args.out else REPO / "results" / "bench" / f"{slug}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    gemm = gemm_peak(device)
    conv = conv_rate(device)
    print(
        f"fp32 GEMM peak here: {gemm:.0f} GFLOP/s (one 3x3 convolution: {conv:.0f} GFLOP/s)",
        flush=True,
    )
    ks = [int(k) for k in args.cnn_members.split(",") if k.strip()]
    try:
        for case in (c for c in CASES if c.key in args.only.split(",")):
            rows.append(measure(case, device, steps[case.key], args.quick, gemm))
            if case.key == "cnn11" and ks:
                rows[-1]["populations"] = measure_populations(
                    case, device, steps[case.key], args.quick, ks
                )
            # partial results survive an interruption
            out.write_text(report(rows, name, device, args.quick, gemm, conv))
    except KeyboardInterrupt:
        print("interrupted: the report holds the models measured so far")
    out.write_text(report(rows, name, device, args.quick, gemm, conv))
    print(f"\nwritten: {out}")


def measure(case: Case, device: torch.device, n: int, quick: bool, peak: float) -> dict:
    """Reference, suite (fp32) and, for the CNNs, the options that change the mathematics."""
    warm = 3 if quick else max(2, n // 5)
    ref = reference_rate(case, device, n, warm)
    suite, (macs, first_macs) = suite_rate(case, device, n, warm)
    # Training: forward, weight gradient and input gradient, 2 FLOP per MAC each; the first
    # layer's input needs no gradient.
    flops = 6 * macs - 2 * first_macs
    row = {
        "case": case,
        "ref": ref,
        "suite": suite,
        "macs": macs,
        "suite_gflops": suite * flops / 1e9,
        # The protocol's arithmetic at this machine's large-GEMM rate: no fp32 trainer beats it.
        "floor_s": case.protocol_images * flops / (peak * 1e9),
    }
    options = []
    if case.key.startswith("cnn"):
        options.append(("bf16", ("execution.bf16=true",)))
        if device.type == "cuda":
            options.insert(0, ("tf32", ("execution.tf32=true",)))
    if device.type == "cuda":  # the whole forward and backward replayed as CUDA graphs
        graphs = ("execution.compile=true", "execution.compile_mode=reduce-overhead")
        options.append(("graphs", graphs))
    for label, extra in options:
        if label == "bf16" and not has_native_bf16(device):
            row[label] = None  # emulated bf16 is tens of times slower: not worth the wait
            continue
        row[label], _ = suite_rate(case, device, n, warm, extra)
    # Protocol time over floor = peak over the suite's rate: the two targets of issue 17.
    row["x_floor"] = case.protocol_images / suite / row["floor_s"]
    row["peak_share"] = row["suite_gflops"] / peak
    line = (
        f"{case.key:6s} reference {ref:10.0f} img/s | suite {suite:10.0f} img/s "
        f"({suite / ref:5.2f}x) | {row['suite_gflops']:.0f} GFLOP/s = "
        f"{100 * row['peak_share']:.0f}% of GEMM peak | protocol "
        f"{fmt_time(case.protocol_images / suite)} = {row['x_floor']:.2f}x its floor "
        f"({fmt_time(row['floor_s'])} at GEMM peak)"
    )
    for label, _ in options:
        if row.get(label):
            line += (
                f" | {label} {row[label]:.0f} img/s ({row[label] / ref:.2f}x reference, "
                f"{row[label] / suite:.2f}x fp32)"
            )
        elif label in row:
            line += f" | {label} skipped (no native bf16 here)"
    print(line, flush=True)
    return row


def measure_populations(
    case: Case, device: torch.device, n: int, quick: bool, ks: list[int]
) -> dict[int, dict[str, float]]:
    """MemberList vs stacked population of K members, fp32, for each K."""
    warm = 1 if quick else max(2, n // 5)
    out = {}
    for k in ks:
        rates = population_rates(case, device, k, n, warm)
        out[k] = rates
        print(
            f"{case.key:6s} K={k} members: one after another {rates['MemberList']:8.1f} "
            f"member-img/s | stacked (grouped convs) {rates['stacked']:8.1f} member-img/s "
            f"({rates['stacked'] / rates['MemberList']:.2f}x)",
            flush=True,
        )
    return out


def report(rows, name: str, device: torch.device, quick: bool, gemm: float, conv: float) -> str:
    peak = next((v for k, v in PEAKS.items() if k in name), None) if device.type == "cuda" else None
    lines = [
        f"# Benchmark: {name}",
        "",
        f"- command: `python scripts/bench.py{' --quick' if quick else ''} --device {device.type}`"
        + (" (QUICK: too few steps to be accurate)" if quick else ""),
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, native bf16: "
        f"{'yes' if has_native_bf16(device) else 'no'}",
        f"- torch {torch.__version__}, commit {git_commit()}, "
        f"date {time.strftime('%Y-%m-%d %H:%M')}",
        f"- fp32 GEMM peak measured here: {gemm:.0f} GFLOP/s (one large square product); the "
        "'floor' column divides each protocol's training arithmetic by it; one large 3x3 "
        f"convolution ran at {conv:.0f} GFLOP/s (on AMD CPUs MKL's sgemm path is slower than "
        "oneDNN's AVX-512 convolutions, so a CNN may exceed 100 % of the GEMM peak)",
        "- data: synthetic tensors of the real shapes (the timing does not depend on the values)",
        "- reference: torchvision DataLoader, images served per sample as torchvision's MNIST / "
        "CIFAR10 classes do (Image.fromarray + ToTensor; "
        "RandomCrop(32, padding=4) + flip for the CNNs), one model, fp32, SGD",
        "- suite: the trainer of `python -m elurepro.train`, device-resident data, populations "
        "(15 MLPs, 16 autoencoders in lockstep), channels-last CNNs; fp32 unless a column says "
        "otherwise (bf16 and tf32 change the mathematics and are off in the paper configs)",
        "",
        "| model | MAC/image | reference img/s | suite img/s | speed-up | suite GFLOP/s | "
        "% of GEMM peak | full paper protocol (suite) | floor at GEMM peak | x floor | "
        "protocol | bf16 img/s | tf32 img/s | CUDA graphs img/s |"
        + (" suite TFLOP/s (fp32 peak %) |" if peak else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if peak else ""),
    ]

    def option(r: dict, label: str) -> str:
        if label not in r:
            return "-"
        if r[label] is None:
            return "skipped: no native bf16"
        return f"{r[label]:.0f} ({r[label] / r['ref']:.2f}x; {r[label] / r['suite']:.2f}x fp32)"

    for r in rows:
        c = r["case"]
        cells = [
            c.key,
            f"{r['macs'] / 1e6:.2f} M",
            f"{r['ref']:.0f}",
            f"{r['suite']:.0f}",
            f"{r['suite'] / r['ref']:.2f}x",
            f"{r['suite_gflops']:.0f}",
            f"{100 * r['peak_share']:.0f}%",
            fmt_time(c.protocol_images / r["suite"]),
            fmt_time(r["floor_s"]),
            f"{r['x_floor']:.2f}x",
            c.protocol_note,
            option(r, "bf16"),
            option(r, "tf32"),
            option(r, "graphs"),
        ]
        if peak:
            tflops = r["suite_gflops"] / 1e3
            cells.append(f"{tflops:.2f} ({100 * tflops / peak['fp32']:.0f}%)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Speed-up: suite images/s over reference images/s. For the MLP and the "
        "autoencoder, suite images/s counts every member's images (the reference trains one "
        "model, so 15 sequential reference runs take 15 times its per-run time). Protocol "
        "times count training steps only (evaluation and activation monitoring add a few "
        "per cent). Floor: the protocol's training arithmetic (forward, weight and input "
        "gradients; 2 FLOP per MAC) at the measured GEMM peak, a bound no trainer whose time "
        "goes to fp32 matrix products can beat here; x floor = protocol time / floor = GEMM "
        "peak / suite rate. Convolutions may run faster than that peak (see the convolution "
        "rate above), so a CNN can come in under its floor.",
    ]
    for r in rows:
        if r.get("populations"):
            lines += [
                "",
                f"{r['case'].key}, the first K members of a sweep chunk (one seed, shared batch), "
                "fp32, member-images/s:",
                "",
                "| K | one net after another (MemberList) | stacked, grouped convs "
                "(StackedConvNets) | stacked / MemberList |",
                "|---|---|---|---|",
            ]
            for k, rates in r["populations"].items():
                a, b = rates["MemberList"], rates["stacked"]
                lines.append(f"| {k} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    lines += ["", "Targets of issue 17, as measured in this run:", ""]
    lines += [f"- {line}" for line in target_lines(rows, peak)]
    return "\n".join(lines) + "\n"


def target_lines(rows: list[dict], gpu_peak: dict | None) -> list[str]:
    """Each target of issue 17 against this run's numbers: met, or by how much it falls short."""
    by = {r["case"].key: r for r in rows}
    out = []

    def verdict(name: str, value: float, target: float, better: str, unit: str) -> None:
        met = value <= target if better == "lower" else value >= target
        how = "met" if met else f"short by {abs(value / target - 1) * 100:.0f} %"
        out.append(f"{name}: {value:{unit}} (target {'≤' if better == 'lower' else '≥'} "
                   f"{target:{unit}}): {how}")  # fmt: skip

    if "mlp" in by:
        verdict("MNIST MLP protocol / its floor", by["mlp"]["x_floor"], 1.6, "lower", ".2f")
    if "ae" in by:
        verdict("autoencoder protocol / its floor", by["ae"]["x_floor"], 1.3, "lower", ".2f")
    if "cnn11" in by:
        r = by["cnn11"]
        if gpu_peak:
            share = r["suite_gflops"] / 1e3 / gpu_peak["fp32"]
            verdict("11-layer CNN, share of the card's fp32 peak", share, 0.45, "higher", ".0%")
        else:
            verdict("11-layer CNN, share of the GEMM peak", r["peak_share"], 0.75, "higher", ".0%")
        if r.get("bf16"):
            verdict("11-layer CNN, bf16 / fp32", r["bf16"] / r["suite"], 1.8, "higher", ".2f")
    return out


if __name__ == "__main__":
    main()
