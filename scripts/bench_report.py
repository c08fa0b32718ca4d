"""The report of ``scripts/bench.py``: its tables, and each issue target against its numbers."""

from __future__ import annotations

import platform
import time

import torch

from elurepro.runlog import git_commit, has_native_bf16

# Dense peak TFLOP/s by card, for the utilisation column (vendor data sheets, SXM parts).
PEAKS = {
    "H100": {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "H200": {"fp32": 67.0, "tf32": 495.0, "bf16": 989.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}

# A measurement: a number, a note saying why there is none ("diverged at iteration 36"), or
# None where it does not apply to the model or device.
Value = float | str | None


def num(v: Value) -> float | None:
    return v if isinstance(v, float) else None


def fmt_time(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def cell(value: Value, fmt: str = ".0f") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if isinstance(value, float) else value


def report(rows: list[dict], meta: dict) -> str:
    device, name, quick = meta["device"], meta["name"], meta["quick"]
    peak = next((v for k, v in PEAKS.items() if k in name), None) if device.type == "cuda" else None
    lines = [
        f"# Benchmark: {name}",
        "",
        f"- command: `{meta['command']}`"
        + (" (QUICK: too few steps to be accurate)" if quick else ""),
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch threads {torch.get_num_threads()}, native bf16: "
        f"{'yes' if has_native_bf16(device) else 'no'}",
        f"- torch {torch.__version__}, commit {git_commit()}, "
        f"date {time.strftime('%Y-%m-%d %H:%M')}",
        f"- fp32 GEMM peak measured here: {meta['gemm']:.0f} GFLOP/s (one large square product); "
        "the 'floor' column divides each protocol's training arithmetic by it; one large 3x3 "
        f"convolution ran at {meta['conv']:.0f} GFLOP/s (on AMD CPUs MKL's sgemm path is slower "
        "than oneDNN's AVX-512 convolutions, so a CNN may exceed 100 % of the GEMM peak)",
        "- data: synthetic tensors of the real shapes (the timing does not depend on the values)",
        "- reference: torchvision DataLoader, images served per sample as torchvision's MNIST / "
        "CIFAR10 classes do (Image.fromarray + ToTensor; "
        "RandomCrop(32, padding=4) + flip for the CNNs), one model, fp32, SGD",
        "- suite: the trainer of `python -m elurepro.train`, device-resident data, populations "
        "(15 MLPs, 16 autoencoders in lockstep), one member per CNN run, channels-last CNNs; "
        "fp32 unless a column says otherwise (bf16 and tf32 change the mathematics and are off "
        "in the paper configs)",
        "",
        "| model | batch | MAC/image | reference img/s | suite img/s | speed-up | suite GFLOP/s | "
        "% of GEMM peak | full paper protocol (suite) | floor at GEMM peak | x floor | protocol |"
        + (" suite TFLOP/s (fp32 peak %) |" if peak else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if peak else ""),
    ]
    for r in rows:
        c = r["case"]
        suite, ref = num(r["suite"]), num(r["ref"])
        gflops = r.get("suite_gflops")
        cells = [
            c.key,
            str(r["batch"]),
            f"{r['macs'] / 1e6:.2f} M" if "macs" in r else "-",
            cell(r["ref"]),
            cell(r["suite"]),
            f"{suite / ref:.2f}x" if suite and ref else "-",
            f"{gflops:.0f}" if gflops else "-",
            f"{100 * r['peak_share']:.0f}%" if gflops else "-",
            fmt_time(c.protocol_images / suite) if suite else "-",
            fmt_time(r["floor_s"]) if "floor_s" in r else "-",
            f"{c.protocol_images / suite / r['floor_s']:.2f}x" if suite and "floor_s" in r else "-",
            c.protocol_note,
        ]
        if peak:
            tflops = (gflops or 0) / 1e3
            cells.append(f"{tflops:.2f} ({100 * tflops / peak['fp32']:.0f}%)" if gflops else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Speed-up: suite images/s over reference images/s. For the MLP and the "
        "autoencoder, suite images/s counts every member's images (the reference trains one "
        "model, so 15 sequential reference runs take 15 times its per-run time). Protocol "
        "times count training steps only (evaluation and activation monitoring add a few "
        "per cent; `scripts/bench_e2e.py` times the training command end to end). Floor: the "
        "protocol's training arithmetic (forward, weight and input gradients; 2 FLOP per MAC) at "
        "the measured GEMM peak, a bound no trainer whose time goes to fp32 matrix products can "
        "beat here; x floor = protocol time / floor = GEMM peak / suite rate. Convolutions may "
        "run faster than that peak (see the convolution rate above), so a CNN can come in under "
        "its floor. A model timed at a smaller batch than its paper batch (the SPP net on a CPU) "
        "says so in the batch column.",
    ]
    lines += options_table(rows)
    lines += units_table(rows)
    lines += populations_tables(rows)
    lines += ["", "Targets of issues 17 and 25, as measured in this run:", ""]
    lines += [f"- {line}" for line in target_lines(rows, peak)]
    return "\n".join(lines) + "\n"


def options_table(rows: list[dict]) -> list[str]:
    labels = [label for label in ("bf16", "tf32", "nchw", "graphs") if any(
        label in r["options"] for r in rows)]  # fmt: skip
    if not labels:
        return []
    names = {
        "bf16": "bf16 autocast",
        "tf32": "tf32",
        "nchw": "channels first (NCHW)",
        "graphs": "CUDA graphs (compile, reduce-overhead)",
    }
    lines = [
        "",
        "Options, each a full trainer run like the suite column (img/s, and x the fp32 "
        "channels-last suite rate):",
        "",
        "| model | fp32 suite | " + " | ".join(names[label] for label in labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    for r in rows:
        if not r["options"]:
            continue
        cells = [r["case"].key, cell(r["suite"])]
        for label in labels:
            value = r["options"].get(label)
            if num(value) and num(r["suite"]):
                cells.append(f"{value:.0f} ({value / r['suite']:.2f}x)")
            else:
                cells.append(cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def units_table(rows: list[dict]) -> list[str]:
    timed = [r for r in rows if r["units"] is not None]
    if not timed:
        return []
    lines = [
        "",
        "ELU against ReLU: the paper population of each model with every member's unit set to "
        "ELU, and to ReLU (same seeds, learning rates, data), its training step (batch, forward, "
        "loss, backward, SGD) timed in alternating blocks, best block of each (target of issue "
        "25: ELU <= 1.03x ReLU):",
        "",
        "| model | members | ELU ms/step | ReLU ms/step | ELU / ReLU |",
        "|---|---|---|---|---|",
    ]
    for r in timed:
        units = r["units"]
        if isinstance(units, dict):
            elu, relu = units["elu"], units["relu"]
            cells = [f"{1e3 * elu:.2f}", f"{1e3 * relu:.2f}", f"{elu / relu:.3f}x"]
        else:
            cells = [units, "-", "-"]
        members = r["case"].protocol_note.split(" x ")[0] if not r["case"].conv else "1"
        lines.append("| " + " | ".join([r["case"].key, members, *cells]) + " |")
    return lines


def populations_tables(rows: list[dict]) -> list[str]:
    lines: list[str] = []
    for r in rows:
        if not r.get("populations"):
            continue
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
            if isinstance(rates, str):
                lines.append(f"| {k} | {rates} | - | - |")
                continue
            a, b = rates["MemberList"], rates["stacked"]
            lines.append(f"| {k} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    return lines


def target_lines(rows: list[dict], gpu_peak: dict | None) -> list[str]:
    """Each target of issues 17 and 25 against this run's numbers: met, or how far short."""
    by = {r["case"].key: r for r in rows}
    out = []

    def verdict(name: str, value: float, target: float, better: str, unit: str) -> None:
        met = value <= target if better == "lower" else value >= target
        how = "met" if met else f"short by {abs(value / target - 1) * 100:.0f} %"
        out.append(f"{name}: {value:{unit}} (target {'≤' if better == 'lower' else '≥'} "
                   f"{target:{unit}}): {how}")  # fmt: skip

    def x_floor(r: dict) -> float | None:
        suite = num(r["suite"])
        return (
            r["case"].protocol_images / suite / r["floor_s"] if suite and "floor_s" in r else None
        )

    if "mlp" in by and x_floor(by["mlp"]):
        verdict("MNIST MLP protocol / its floor", x_floor(by["mlp"]), 1.6, "lower", ".2f")
    if "ae" in by and x_floor(by["ae"]):
        verdict("autoencoder protocol / its floor", x_floor(by["ae"]), 1.3, "lower", ".2f")
    r = by.get("cnn11")
    if r and r.get("suite_gflops"):
        if gpu_peak:
            share = r["suite_gflops"] / 1e3 / gpu_peak["fp32"]
            verdict("11-layer CNN, share of the card's fp32 peak", share, 0.45, "higher", ".0%")
            verdict("11-layer CNN, images/s (bench step rate)", r["suite"], 27_500, "higher", ".0f")
            verdict(
                "Figs. 4-5 protocol, GPU-hours at the bench rate",
                r["case"].protocol_images / r["suite"] / 3600,
                12.0,
                "lower",
                ".1f",
            )
        else:
            verdict("11-layer CNN, share of the GEMM peak", r["peak_share"], 0.75, "higher", ".0%")
        bf16, tf32 = num(r["options"].get("bf16")), num(r["options"].get("tf32"))
        if bf16:
            target = 2.0 if gpu_peak else 1.8
            verdict("11-layer CNN, bf16 / fp32", bf16 / r["suite"], target, "higher", ".2f")
        if tf32:
            verdict("11-layer CNN, tf32 / fp32", tf32 / r["suite"], 1.5, "higher", ".2f")
    for r in rows:
        units = r["units"]
        if isinstance(units, dict):
            ratio = units["elu"] / units["relu"]
            verdict(f"{r['case'].key}, ELU / ReLU step time", ratio, 1.03, "lower", ".3f")
    return out
