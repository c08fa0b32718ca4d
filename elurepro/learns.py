"""``python -m elurepro.learns``: does every paper protocol learn?

Trains each experiment's members (every unit and BN variant it defines, seed 0) for the first
iterations of the paper's own schedule (``CASES``: a number per case, where a case is an
experiment or some of its members; ``--steps`` overrides), at the paper's learning rate, on real
data (MNIST; the CIFAR nets on CIFAR-10, which may be the lossy copy; the SPP net on a small
ImageNet-layout set at 1/16 width), through the same command as every run (``budget=learns``).
A member passes when

1. it **starts sane**: its loss on the evaluation split before the first step is at most
   ``START_FACTOR`` times the loss of a net whose outputs are all zero (ln C for C classes; ln 2
   per pixel for the autoencoder's mean binary cross-entropy);
2. it **never diverges** (no non-finite loss);
3. it **learns**: its loss on the evaluation split after the last step is at least ``MARGIN``
   (relative) below both its own start and the all-zero output's loss, so it predicts held-out
   images better than chance (the autoencoder: below its own start), and its mean training
   loss over the last third of the iterations is below the first third's. The evaluation loss
   decides because it is measured on the same images in evaluation mode: the training loss of
   the first iterations carries dropout's noise, and in the CIFAR nets it can fall from that
   transient back to ln C without learning anything (docs/protocol.md §4.1). A member trained
   at a smaller learning rate than the protocol's own (the autoencoder's 1e-3 to 1e-5, Fig. 3)
   moves little in so few iterations: it must only end with a lower evaluation loss than it
   started with.

It proves that a protocol's start and first steps are healthy; it does not prove that a run
reaches the paper's numbers, nor anything about later schedule phases.

    python -m elurepro.learns [--only cifar_18layer,...] [--steps N] [--device cpu|cuda]
        [--set KEY=VALUE ...] [--runs DIR] [--out report.md]

``--set`` passes a Hydra override to every experiment checked, e.g. a unit of your own:
``--set 'members.activations=[elu,{name: mypkg.acts:StarReLU}]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from elurepro.analysis.collect import load_member
from elurepro.errors import ElureproError
from elurepro.hydra_errors import composition_error
from elurepro.store.identity import config_key

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
START_FACTOR = 1.5
MARGIN = 0.01


@dataclass(frozen=True)
class Case:
    """Members of one experiment as checked: their data, iterations and the overrides that make
    them run here."""

    experiment: str
    data: str
    steps: int  # iterations on a CPU; --steps overrides
    overrides: tuple[str, ...] = ()
    data_folder: str | None = None  # under $ELUREPRO_DATA, for the ImageNet layout
    part: str = ""  # names a case that checks some of an experiment's members on their own

    @property
    def name(self) -> str:
        return f"{self.experiment}-{self.part}" if self.part else self.experiment


CASES: dict[str, Case] = {
    c.name: c
    for c in (
        Case("mnist_meanact", "mnist", 150),
        # Every learning rate of Fig. 3; at 1e-5 the loss falls slowly but falls.
        Case("mnist_autoencoder", "mnist", 150),
        # ReLU and LReLU without BN fall by under 1% in their first 60 iterations (at gain 1 and
        # at their gain of 1.6, U3); they learn by 300 at either gain (results/learns/README.md).
        Case("cifar100_11layer", "cifar10", 300),
        # Table 1 trains ELU only; it leaves ln C after about 200 iterations
        # (results/learns/cifar_18layer-elu-300.md).
        Case("cifar_18layer", "cifar10", 300, ("members.activations=[elu]",)),
        # ReLU beside it, so that a user can compare: at its gain of 1.6 (U3) it leaves ln C
        # some 200-300 iterations after ELU (results/learns/cifar_18layer-relu-gain1.6-600.md).
        Case("cifar_18layer", "cifar10", 600, ("members.activations=[relu]",), part="relu"),
        Case("imagenet_15layer_spp", "imagenet", 60, (), "tiny-imagenet-10"),
    )
}


@dataclass(frozen=True)
class CurvePoint:
    """One evaluation of a member, and its mean training loss since the evaluation before."""

    step: int
    loss: float
    error: float | None  # percent; None where the task has no error (the autoencoder)
    train: float  # nan at the first evaluation (no training yet)


@dataclass
class Verdict:
    """What one member did in its first iterations."""

    experiment: str
    member: str
    start: float  # evaluation loss before the first step
    end: float  # evaluation loss after the last step
    reference: float  # the all-zero output's loss
    first: float  # mean training loss, first third
    last: float  # mean training loss, last third
    status: str
    steps: int = 0  # iterations trained
    data: str = ""  # the data set's description (official, or which copy)
    problems: list[str] = field(default_factory=list)
    curve: list[CurvePoint] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def zero_output_loss(cfg: DictConfig, num_classes: int | None) -> float:
    """The loss of a net whose outputs are all zero: the yardstick of a sane start."""
    if cfg.model.task == "classification":
        return math.log(num_classes or 1000)
    pixels = 1 if cfg.model.get("pixel_reduction", "mean") == "mean" else 784
    return pixels * math.log(2.0)


def judge(
    experiment: str,
    member: str,
    records: Sequence[dict],
    summary: dict,
    reference: float,
    lr: float,
    task: str = "classification",
) -> Verdict:
    """The three checks on one member's metrics.jsonl records and summary.json; ``lr``: the
    protocol's own learning rate. A reconstruction's all-zero output is no yardstick of chance
    (MNIST is mostly black): an autoencoder must beat its own start only."""
    train = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
    curve = learning_curve(records, train)
    start = curve[0].loss if curve and curve[0].step == 0 else math.nan
    end = curve[-1].loss if curve else math.nan
    own_lr = next((r["lr"] for r in records if "lr" in r), lr)
    status = summary.get("status", "unknown")
    third = max(1, len(train) // 3)
    first = _mean([v for _, v in train[:third]])
    last = _mean([v for _, v in train[-third:]])
    problems = []
    if not math.isfinite(start) or start > START_FACTOR * reference:
        problems.append(
            f"starts at loss {start:.3g}, above {START_FACTOR} x {reference:.3g} (all-zero outputs)"
        )
    if status == "diverged" or not all(math.isfinite(v) for _, v in train):
        where = summary.get("diverged_at_step") or next(
            (s for s, v in train if not math.isfinite(v)), None
        )
        problems.append(f"diverged{f' at iteration {where}' if where else ''}")
    elif len(train) < 3:
        problems.append(f"only {len(train)} training log points; need at least 3")
    elif own_lr < lr:
        if not end < start:
            problems.append(
                f"at lr {own_lr:g} (below the protocol's {lr:g}): evaluation loss "
                f"{start:.5g} -> {end:.5g}, not lower"
            )
    else:
        chance = task == "classification"
        bar = (1 - MARGIN) * (min(start, reference) if chance else start)
        if not end <= bar:
            what = (
                f"both its start and the all-zero output's {reference:.4g}"
                if chance
                else "its start"
            )
            problems.append(
                f"evaluation loss {start:.4g} -> {end:.4g}: not {MARGIN:.0%} below {what} "
                f"(needs <= {bar:.4g})"
            )
        if not last < first:
            problems.append(
                f"training loss {first:.4g} (first third) -> {last:.4g} (last third): not lower"
            )
    return Verdict(
        experiment,
        member,
        start,
        end,
        reference,
        first,
        last,
        status,
        problems=problems,
        curve=curve,
    )


def learning_curve(records: Sequence[dict], train: Sequence[tuple[int, float]]) -> list[CurvePoint]:
    """Each evaluation, once per step, with the mean training loss of the steps since the one
    before (the training loss alone is dropout's noise on a 100-image batch). All of one split,
    the one evaluated first: MNIST evaluates its validation split throughout and adds the test
    split at the end, and start and end must come from the same images."""
    first = next((r for r in records if "val/loss" in r or "test/loss" in r), {})
    loss, error = ("val/loss", "val/error") if "val/loss" in first else ("test/loss", "test/error")
    points: list[CurvePoint] = []
    for r in records:
        # The final evaluation repeats the last one's step and values.
        if loss not in r or (points and points[-1].step == r["step"]):
            continue
        before = points[-1].step if points else -1
        since = _mean([v for s, v in train if before < s <= r["step"]])
        points.append(CurvePoint(int(r["step"]), float(r[loss]), r.get(error), since))
    return points


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def compose_case(
    case: Case,
    steps: int,
    device: str,
    runs: Path,
    data_root: Path | None,
    extra: Sequence[str] = (),
):
    overrides = [
        f"experiment={case.experiment}",
        f"data={case.data}",
        "budget=learns",
        f"budget.stop_after={steps}",
        f"device={device}",
        f"runs_dir={runs}",
        "progress=false",
        *case.overrides,
        *extra,
    ]
    if case.data_folder:
        if data_root is None:
            raise ElureproError(
                f"{case.experiment}: set ELUREPRO_DATA to a folder holding {case.data_folder}/ "
                "(an ImageFolder layout: train/<class>/, val/<class>/)"
            )
        overrides.append(f"data.root={data_root / case.data_folder}")
    try:
        with initialize_config_dir(str(CONFIGS), version_base=None):
            cfg = compose("train", overrides)
    except HydraException as err:  # a --set Hydra refuses: one line, as the train command says it
        line = composition_error(err, overrides, CONFIGS)
        raise ElureproError(f"{case.experiment}: {line}") from None
    # A training log point every step; in epoch units any interval below one step rounds up to
    # one step (plan_steps).
    cfg.train.log_every = 1 if cfg.train.unit == "step" else 1e-9
    return cfg


def check(
    case: Case,
    steps: int,
    device: str,
    runs: Path,
    quiet: bool = True,
    extra: Sequence[str] = (),
) -> list[Verdict]:
    """Train one experiment's members for ``steps`` iterations (``extra``: more overrides)
    and judge each."""
    from elurepro import train
    from elurepro.assemble import plan_chunks

    data_root = os.environ.get("ELUREPRO_DATA")
    root = Path(data_root) if data_root else None
    cfg = compose_case(case, steps, device, runs, root, extra)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext():
        code = train.run(cfg)
    if code:
        raise ElureproError(f"{case.experiment}: training stopped with status {code}")
    # Only this command's members: a runs folder may hold other cases' and other --steps' runs.
    key = config_key(OmegaConf.to_container(cfg, resolve=True))
    planned = sorted({m.folder for chunk in plan_chunks(cfg) for m in chunk})
    lr, task = float(cfg.optim.lr), str(cfg.model.task)
    verdicts = []
    for record in sorted((runs / case.experiment).rglob("sweep.json")):
        sweep = json.loads(record.read_text())
        if sweep.get("config_key") != key:
            continue
        reference = zero_output_loss(cfg, sweep["data"].get("num_classes"))
        data = sweep["data"].get("description", sweep["data"].get("name", ""))
        for member in planned:
            if not (record.parent / member / "summary.json").exists():
                continue
            run = load_member(record.parent / member)
            verdict = judge(case.experiment, member, run.records, run.summary, reference, lr, task)
            verdict.steps, verdict.data = steps, data
            verdicts.append(verdict)
    if not verdicts:
        raise ElureproError(f"{case.experiment}: no member wrote a summary under {runs}")
    return verdicts


def report(verdicts: Sequence[Verdict], device: str, argv: str) -> str:
    import torch

    from elurepro.runlog import device_name, git_commit

    data = {v.experiment: v.data for v in verdicts}
    lines = [
        "# Does every paper protocol learn?",
        "",
        f"`python -m elurepro.learns {argv}`: commit {git_commit()}, torch {torch.__version__}, "
        f"{device_name(torch.device(device))}. Data: "
        + "; ".join(f"{e}: {d}" for e, d in data.items())
        + ". A check of the first iterations at `budget=learns`: never a reproduction.",
        "",
        f"Each member: evaluation loss before the first step at most {START_FACTOR} x the "
        f"all-zero output's; no divergence; evaluation loss after the last step at least "
        f"{MARGIN:.0%} below both its start and the all-zero output's (the autoencoder: below "
        f"its start); mean training loss of the last third of the iterations below the first "
        f"third's.",
        "",
        "| experiment | iterations | member | evaluation loss start → end (all-zero outputs) "
        "| training loss, first → last third | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        verdict = "learns" if v.ok else "FAILS: " + "; ".join(v.problems)
        lines.append(
            f"| {v.experiment} | {v.steps} | {v.member} | {v.start:.4g} → "
            f"{v.end:.4g} ({v.reference:.4g}) | {v.first:.4g} → {v.last:.4g} | {verdict} |"
        )
    lines += ["", "## Learning curves", ""]
    lines.append(
        "Each evaluation (the fixed evaluation images, evaluation mode) and the mean training loss "
        "of the iterations since the one before. The first iterations of the schedule only: "
        "not comparable with the paper's curves or numbers."
    )
    for v in verdicts:
        lines += ["", f"**{v.experiment}, {v.member}**", ""]
        lines += [
            "| iteration | evaluation loss | evaluation error (%) | training loss since the last |",
            "|---|---|---|---|",
        ]
        for c in v.curve:
            error = "–" if c.error is None else f"{c.error:.2f}"
            train = "–" if math.isnan(c.train) else f"{c.train:.4f}"
            lines.append(f"| {c.step} | {c.loss:.4f} | {error} | {train} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m elurepro.learns",
        description="Train each paper configuration for its first iterations on real data and "
        "fail unless every member starts sane, never diverges and learns.",
    )
    p.add_argument(
        "--only",
        default=",".join(CASES),
        help=f"comma-separated cases (default: all): {', '.join(CASES)}",
    )
    p.add_argument("--steps", type=int, default=None, help="iterations (default: per case)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", type=Path, default=None, help="keep the runs here (default: a "
                   "temporary folder, removed at the end)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="also write the report here")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override for every experiment (repeatable)",
    )
    p.add_argument("--verbose", action="store_true", help="show the training output")
    args = p.parse_args(argv)
    unknown = [e for e in args.only.split(",") if e not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    if args.steps is not None and args.steps < 3:
        p.error(f"--steps {args.steps}: at least 3 (the loss is compared over thirds)")
    cases = [CASES[e] for e in args.only.split(",")]
    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory(prefix="elurepro-learns-") as tmp:
        runs = args.runs or Path(tmp)
        try:
            for case in cases:
                n = args.steps or case.steps
                print(f"{case.name}: {n} iterations ...", flush=True)
                found = check(case, n, args.device, runs, not args.verbose, args.set)
                for v in found:
                    print(f"  {v.member}: {'learns' if v.ok else '; '.join(v.problems)}")
                verdicts += found
        except ElureproError as err:
            print(f"error: {err}", file=sys.stderr)
            return err.exit_code
    text = report(verdicts, args.device, " ".join(argv if argv is not None else sys.argv[1:]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    failed = [v for v in verdicts if not v.ok]
    print(f"{len(verdicts) - len(failed)} of {len(verdicts)} members learn", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
