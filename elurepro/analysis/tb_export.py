"""Optional TensorBoard output: HParams records per finished member, figures as images."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from elurepro.analysis.collect import FINISHED, MemberRun

HPARAMS_DIR = "_hparams"
FIGURES_DIR = "_figures"


def _clear_events(folder: Path) -> None:
    # A rerun replaces its own earlier records instead of showing them twice.
    if folder.is_dir():
        for path in folder.glob("events.out.tfevents.*"):
            path.unlink()


def hparams_of(member: MemberRun) -> dict[str, bool | int | float | str]:
    hp: dict[str, bool | int | float | str] = {
        "activation": member.activation,
        "unit": member.unit,
        "batchnorm": member.batchnorm,
        "seed": member.seed,
        "dataset": member.dataset,
        "group": member.group,
        "budget": member.budget or "unknown",
        "data_fingerprint": member.fingerprint or "unknown",
    }
    if member.lr is not None:
        hp["lr"] = member.lr
    for key, value in member.activation_params.items():
        if isinstance(value, (bool, int, float, str)):
            hp[f"activation_{key}"] = value
    return hp


def final_metrics(member: MemberRun) -> dict[str, float]:
    final = (member.summary or {}).get("final") or {}
    return {
        f"final/{name}": float(value)
        for name, value in final.items()
        if isinstance(value, (int, float)) and math.isfinite(value)
    }


def export(
    runs_dir: str | Path,
    members: Sequence[MemberRun],
    figures: Mapping[str, Figure],
    tag: str,
    sweep: str = "",
) -> str:
    """Write HParams and figures under `runs_dir` (in `<sweep>/` subfolders when a runs folder
    holds several sweeps, so that two budgets' records never mix); returns a one-line note,
    never raises."""
    runs_dir = Path(runs_dir)
    hparams_dir = runs_dir / HPARAMS_DIR / sweep
    figures_dir = runs_dir / FIGURES_DIR / sweep
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as err:  # optional dependency: the analysis goes on without it
        return f"TensorBoard output skipped ({type(err).__name__}: {err})"
    try:
        used: set[str] = set()
        count = 0
        for m in members:
            if m.status != FINISHED:
                continue
            name = m.id if m.id not in used else f"{m.id}-{m.population}"
            used.add(name)
            folder = hparams_dir / name
            _clear_events(folder)
            with SummaryWriter(log_dir=str(folder)) as writer:
                writer.add_hparams(hparams_of(m), final_metrics(m), run_name=".")
            count += 1
        folder = figures_dir
        _clear_events(folder)
        with SummaryWriter(log_dir=str(folder)) as writer:
            for stem, fig in figures.items():
                writer.add_figure(f"{tag}/{stem}", fig, close=False)
    except Exception as err:  # a read-only runs folder must not lose the tables and figures
        return (
            f"TensorBoard output failed ({type(err).__name__}: {err}); tables and figures are fine"
        )
    return (
        f"TensorBoard: HParams of {count} finished members in {hparams_dir}, "
        f"figures in {figures_dir} (tensorboard --logdir {runs_dir})"
    )
