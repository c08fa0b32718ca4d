"""Why a CIFAR net blows up: forward and backward scale per layer, at initialisation and over
the first iterations, with one ingredient of the protocol changed at a time.

For each variant (the experiment's config plus a few overrides) it builds the net of seed 0 and,
on real CIFAR images after the protocol's GCN + ZCA:

- at initialisation, on one fixed batch: the rms of every conv's output (eval and train mode),
  the logits' rms, the loss against ln C, per layer the relative size of one SGD step
  (lr * |grad| / |weight|), and lr * |h|^2 for the class-score conv's input h (how far one step
  on that layer alone moves the logits);
- then ``--steps`` iterations of the protocol's SGD (lr, momentum, weight decay on conv weights,
  augmentation, dropout): the training loss per iteration and where it stops being finite.

    python scripts/cnn_scale.py --experiment cifar_18layer --units elu \\
        --variants 'paper=;no dropout=model.dropout=[0,0,0,0,0,0,0,0]' --steps 10

A variant is ``label=override override ...`` (Hydra overrides of the experiment's config; the
special override ``input_scale=S`` multiplies the images by S). Writes a Markdown report to
``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from elurepro.activations import parse_activation  # noqa: E402
from elurepro.data.augment import pad_crop_flip  # noqa: E402
from elurepro.data.cifar import load_cifar  # noqa: E402
from elurepro.data.paths import resolve_cache_dir, resolve_data_root  # noqa: E402
from elurepro.data.preprocess import whiten_cifar  # noqa: E402
from elurepro.models.convnet import StackConvNet, with_classes  # noqa: E402
from elurepro.models.registry import unit_init_gain  # noqa: E402
from elurepro.runlog import git_commit  # noqa: E402
from elurepro.trainer.optimizer import sgd  # noqa: E402


@dataclass
class Variant:
    label: str
    overrides: list[str]
    input_scale: float = 1.0


def parse_variants(text: str) -> list[Variant]:
    out = []
    for part in text.split(";"):
        label, _, rest = part.partition("=")
        overrides, scale = [], 1.0
        for o in rest.split():
            if o.startswith("input_scale="):
                scale = float(o.split("=", 1)[1])
            else:
                overrides.append(o)
        out.append(Variant(label.strip(), overrides, scale))
    return out


def compose_cfg(experiment: str, data: str, overrides: Sequence[str]):
    with initialize_config_dir(str(REPO / "configs"), version_base=None):
        return compose("train", [f"experiment={experiment}", f"data={data}", *overrides])


def build_net(cfg, unit: str, num_classes: int, batchnorm: bool) -> StackConvNet:
    m = OmegaConf.to_container(cfg.model, resolve=True)
    for key in ("kind", "task", "top5", "pixel_reduction"):
        m.pop(key, None)
    spec = parse_activation(unit)
    torch.manual_seed(0)
    return StackConvNet(
        with_classes(m.pop("stacks"), num_classes),
        activation=spec.factory(),
        batchnorm=batchnorm,
        **unit_init_gain(m, spec.name),
    )


def rms(t: torch.Tensor) -> float:
    return float(t.detach().float().pow(2).mean().sqrt())


def conv_outputs(net: nn.Module, x: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    """The rms of every conv's output, and the logits, for one forward."""
    seen: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen.append(rms(out)))
        for m in net.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        logits = net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen, logits


def score_input_norm(net: StackConvNet, x: torch.Tensor) -> float:
    """Mean over positions of |h|^2, h the class-score conv's input: one SGD step of size lr on
    that layer alone moves the logits by lr * |h|^2 * (p - y)."""
    seen: list[torch.Tensor] = []
    last = [m for m in net.modules() if isinstance(m, nn.Conv2d)][-1]
    hook = last.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0]))
    try:
        with torch.no_grad():
            net(x)
    finally:
        hook.remove()
    return float(seen[0].pow(2).sum(dim=1).mean())


def at_init(net: StackConvNet, x: torch.Tensor, y: torch.Tensor, lr: float) -> dict:
    ce = nn.CrossEntropyLoss()
    net.eval()
    h2 = score_input_norm(net, x)
    with torch.no_grad():
        eval_rms, eval_logits = conv_outputs(net, x)
    net.train()
    torch.manual_seed(1)
    train_rms, train_logits = conv_outputs(net, x)
    loss = ce(train_logits, y)
    net.zero_grad()
    loss.backward()
    steps = [
        lr * rms(m.weight.grad) / rms(m.weight) for m in net.modules() if isinstance(m, nn.Conv2d)
    ]
    return {
        "eval_rms": eval_rms,
        "train_rms": train_rms,
        "logit_rms": (rms(eval_logits), rms(train_logits)),
        "class_std": (
            float(eval_logits.std(dim=1).mean()),
            float(train_logits.detach().std(dim=1).mean()),
        ),
        "loss": (float(ce(eval_logits, y)), float(loss.detach())),
        "step": steps,
        "lr_h2": lr * h2,
    }


def train_steps(
    net: StackConvNet, cfg, train_x: torch.Tensor, train_y: torch.Tensor, steps: int, scale: float
) -> list[float]:
    o, t = cfg.optim, cfg.train
    opt = sgd(net, float(o.momentum), float(o.weight_decay))
    for g in opt.param_groups:
        g["lr"] = float(o.lr)
    gen = torch.Generator().manual_seed(0)
    ce = nn.CrossEntropyLoss()
    net.train()
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(train_x), (int(t.batch_size),), generator=gen)
        x = pad_crop_flip(train_x[idx], int(cfg.data.pad), gen) * scale
        loss = ce(net(x), train_y[idx])
        losses.append(float(loss))
        if not math.isfinite(losses[-1]):
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return losses


def fmt(v: float) -> str:
    if not math.isfinite(v):
        return "nan"
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.1e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--experiment", default="cifar_18layer")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--units", default="elu", help="comma-separated unit names")
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--variants", default="paper=")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=100, help="images of the fixed init batch")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    base = compose_cfg(args.experiment, args.data, [])
    arrays = load_cifar(resolve_data_root(base.data.root), base.data.name, download=False)
    train_x, _ = whiten_cifar(
        arrays, resolve_cache_dir(None), base.data.gcn_scale, base.data.zca_filter_bias
    )
    train_y = arrays.train_y
    x0, y0 = train_x[: args.batch], train_y[: args.batch]
    lnc = math.log(arrays.num_classes)
    lines = [
        f"# Scale of `{args.experiment}` on {arrays.description}",
        "",
        f"`python scripts/cnn_scale.py {' '.join(sys.argv[1:])}`  ",
        f"commit {git_commit()}, torch {torch.__version__}, {platform.processor() or 'cpu'}; "
        f"seed 0; input rms {rms(x0):.3f}; ln C = {lnc:.3f}.",
        "",
    ]
    summary = [
        "| unit | variant | test loss at init (eval) | train-mode loss | logit rms eval / train "
        "| last conv rms eval / train | lr·|h|² | first non-finite iteration | losses |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    detail = []
    for unit in args.units.split(","):
        for v in parse_variants(args.variants):
            cfg = compose_cfg(args.experiment, args.data, v.overrides)
            net = build_net(cfg, unit, arrays.num_classes, args.batchnorm)
            start = time.perf_counter()
            init = at_init(net, x0 * v.input_scale, y0, float(cfg.optim.lr))
            net = build_net(cfg, unit, arrays.num_classes, args.batchnorm)
            losses = train_steps(net, cfg, train_x, train_y, args.steps, v.input_scale)
            bad = next((i + 1 for i, x in enumerate(losses) if not math.isfinite(x)), None)
            summary.append(
                f"| {unit} | {v.label} | {fmt(init['loss'][0])} | {fmt(init['loss'][1])} "
                f"| {fmt(init['logit_rms'][0])} / {fmt(init['logit_rms'][1])} "
                f"| {fmt(init['eval_rms'][-1])} / {fmt(init['train_rms'][-1])} "
                f"| {fmt(init['lr_h2'])} | {bad or '—'} | {' '.join(fmt(x) for x in losses)} |"
            )
            detail += [
                f"### {unit}, {v.label} ({' '.join(v.overrides) or 'the config as it is'}"
                f"{f', input x{v.input_scale}' if v.input_scale != 1 else ''})",
                "",
                "| conv | output rms, eval | output rms, train | lr·|grad|/|w| |",
                "|---|---|---|---|",
                *(
                    f"| {i + 1} | {fmt(a)} | {fmt(b)} | {fmt(c)} |"
                    for i, (a, b, c) in enumerate(
                        zip(init["eval_rms"], init["train_rms"], init["step"], strict=True)
                    )
                ),
                "",
            ]
            print(summary[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    text = "\n".join(
        [*lines, "## Summary", "", *summary, "", "## Per layer at initialisation", "", *detail]
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
