"""TensorBoard output of the analysis, written into each sweep folder beside its members.

``tensorboard --logdir <sweep folder>`` then shows one run per member (``<group>/s<seed>``, its
curves, histograms, HParams session and text, all written by the trainer) and, from here:

- ``_mean_std/<group>``: one run per configuration with the mean over its finished seeds of every
  headline metric and mean ∓ std (tags ``mean_std/<metric>``, ``.../lower``, ``.../upper``), the
  series of the Custom Scalars tab's margin charts. Their step is the epoch where the experiment
  counts in epochs (and every point is at a whole epoch), else the iteration. They sit under a
  name of their own, never under a member's tags, so ``^elu/`` still selects the ELU members only.
- ``_analysis``: the report's figures (Images tab), the Custom Scalars layout (one margin chart
  per headline metric, one line per configuration) and the HParams columns (each hyperparameter
  with its type and values, the headline metrics as metric columns).

A member whose folder has no HParams session yet (trained before the trainer wrote them), or one
whose status changed since (summary.json decides), gets its dashboard file (re)written; all else
the analysis writes is replaced on every run, so a second analysis never adds a second copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from elurepro.analysis.collect import FINISHED, UNFINISHED, MemberRun
from elurepro.analysis.figures import mean_curve

MEAN_STD_DIR = "_mean_std"
ANALYSIS_DIR = "_analysis"
MEAN_STD_TAG = "mean_std"
LEGACY_DIRS = ("_hparams", "_figures")  # where earlier versions wrote under the runs folder
_PER_LAYER = re.compile(r"/layer\d+$")
_HPARAM_ORDER = ("unit", "batchnorm", "lr", "seed", "status")
_DESCRIPTIONS = {
    "unit": "activation function with its non-default parameters",
    "batchnorm": "batch normalization before each activation",
    "lr": "the member's learning rate",
    "seed": "seed: initial weights and data order (a whole number)",
    "status": "finished, diverged (non-finite loss) or unfinished",
}


def disk_status(member: MemberRun) -> str:
    """The member's status as its folder says now (summary.json), not as an analysis with
    ``--partial`` may have relabelled it in memory."""
    path = member.folder / "summary.json"
    try:
        status = json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return UNFINISHED
    return status if status in ("finished", "diverged") else UNFINISHED


def headline_metrics(members: Sequence[MemberRun]) -> list[str]:
    """The scalar tags worth a column and a chart: training and evaluation metrics and the
    pooled median activation; not per-layer values or the learning rate."""
    names = {n for m in members for n in m.metric_names()}
    names |= {n for m in members for n in ((m.summary or {}).get("final") or {})}
    names = {n for n in names if "/" in n and not _PER_LAYER.search(n)}

    def order(name: str) -> tuple:
        # What the paper compares first: training loss, evaluation errors, the median
        # activation; then the training error and the evaluation losses.
        split, metric = name.split("/", 1)
        if name == "train/loss":
            rank = 0
        elif split not in ("train", "act") and "error" in metric:
            rank = 1
        elif name == "act/median":
            rank = 2
        elif split == "train":
            rank = 3
        else:
            rank = 4
        return (rank, {"val": 0, "test": 1}.get(split, 2), name)

    return sorted(names, key=order)


def x_axis(members: Sequence[MemberRun]) -> str:
    """'epoch' where the experiment counts in epochs and every logged point is at a whole epoch,
    else 'step'."""
    units = set()
    for m in members:
        config = (m.provenance or m.summary or {}).get("config") or {}
        units.add((config.get("train") or {}).get("unit"))
    if units != {"epoch"}:
        return "step"
    epochs = [float(r["epoch"]) for m in members for r in m.records if "epoch" in r]
    return "epoch" if all(abs(e - round(e)) < 1e-6 for e in epochs) else "step"


def experiment_summary(hparams: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> Any:
    """The HParams experiment: every hyperparameter any session has, typed (string: a category
    with its values, bool, or float64 with its values), and the metric columns."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from tensorboard.plugins.hparams import metadata as hp_metadata

    from elurepro.runlog import STATUSES, hparams_summary

    names = {name for hp in hparams for name in hp}
    ordered = [n for n in _HPARAM_ORDER[:1] if n in names]
    ordered += sorted(n for n in names if n.startswith("activation_"))
    ordered += [n for n in _HPARAM_ORDER[1:] if n in names]
    ordered += sorted(names - set(ordered))
    infos = []
    for name in ordered:
        values = [hp[name] for hp in hparams if name in hp]
        distinct = sorted(set(values), key=lambda v: (str(type(v)), v))
        if name == "status":
            distinct = list(STATUSES)
        if all(isinstance(v, bool) for v in values):
            kind, field = api_pb2.DATA_TYPE_BOOL, "bool_value"
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            kind, field = api_pb2.DATA_TYPE_FLOAT64, "number_value"
            distinct = [float(v) for v in distinct]
        else:
            kind, field = api_pb2.DATA_TYPE_STRING, "string_value"
            distinct = sorted({str(v) for v in distinct}) if name != "status" else distinct
        domain = struct_pb2.ListValue(values=[struct_pb2.Value(**{field: v}) for v in distinct])
        infos.append(
            api_pb2.HParamInfo(
                name=name,
                display_name=name,
                description=_DESCRIPTIONS.get(name, ""),
                type=kind,
                domain_discrete=domain,
                differs=len(set(values)) > 1,
            )
        )
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(group="", tag=metric),
            display_name=metric,
            description="last logged value; a group's row is the mean over its seeds",
        )
        for metric in metrics
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
    return hparams_summary(
        hp_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def _clear_events(folder: Path) -> None:
    """Remove the event files under ``folder`` and the folders they leave empty: a rerun
    replaces its own earlier records instead of showing them twice."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*tfevents*"):
        path.unlink()
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def _write_sessions(members: Sequence[MemberRun]) -> int:
    """Write the dashboard file of every member without one of its current status."""
    from elurepro.runlog import dashboard_status, write_dashboard

    written = 0
    for m in members:
        status = disk_status(m)
        if dashboard_status(m.folder) == status:
            continue  # the trainer wrote it (or an earlier analysis did)
        provenance = dict(m.provenance or {})
        for key, value in (m.summary or {}).items():
            provenance.setdefault(key, value)
        write_dashboard(m.folder, m.info, provenance, status)
        written += 1
    return written


def _write_mean_std(
    root: Path, members: Sequence[MemberRun], metrics: Sequence[str], axis: str
) -> int:
    from torch.utils.tensorboard import SummaryWriter

    groups: dict[str, list[MemberRun]] = {}
    for m in members:
        if m.status == FINISHED:
            groups.setdefault(m.group, []).append(m)
    for group, runs in sorted(groups.items()):
        with SummaryWriter(log_dir=str(root / MEAN_STD_DIR / group)) as writer:
            for metric in metrics:
                curve = mean_curve([m.series(metric, x=axis) for m in runs])
                for x, mean, std in zip(curve.x, curve.mean, curve.std):
                    step = int(round(x))
                    tag = f"{MEAN_STD_TAG}/{metric}"
                    writer.add_scalar(tag, mean, step)
                    writer.add_scalar(f"{tag}/lower", mean - std, step)
                    writer.add_scalar(f"{tag}/upper", mean + std, step)
    return len(groups)


def steps_per_epoch(members: Sequence[MemberRun]) -> float | None:
    """Iterations per epoch, as the records show them (None where they do not say)."""
    for m in members:
        for r in m.records:
            if r.get("epoch") and r.get("step"):
                return float(r["step"]) / float(r["epoch"])
    return None


def layout(
    experiment: str, metrics: Sequence[str], axis: str, per_epoch: float | None = None
) -> dict:
    """The Custom Scalars layout (``SummaryWriter.add_custom_scalars``'s form): one margin chart
    per headline metric; each ``_mean_std/<group>`` run draws one line with its ± std band."""
    x = axis if axis == "epoch" or not per_epoch else f"step ({per_epoch:.0f} per epoch)"
    title = f"{experiment}: mean ± std over finished seeds, x = {x}"
    charts = {}
    # TensorBoard (2.21) draws a category's charts last to first: listed in reverse, they show
    # in the order of `metrics` (training loss first).
    for metric in reversed(metrics):
        tag = f"{MEAN_STD_TAG}/{metric}"
        charts[metric] = ["Margin", [tag, f"{tag}/lower", f"{tag}/upper"]]
    return {title: charts}


def _remove_legacy(runs_dir: Path) -> None:
    # Earlier versions wrote one HParams run per member (with one-point final/* charts) and a
    # figures run under the runs folder: the clutter this layout replaces.
    for name in LEGACY_DIRS:
        _clear_events(runs_dir / name)


def export(
    runs_dir: str | Path,
    members: Sequence[MemberRun],
    figures: Mapping[str, Figure],
    experiment: str,
) -> str:
    """Write the TensorBoard output of one analysed sweep (see the module docstring) into the
    sweep folder(s) of `members`; returns a one-line note, never raises."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        from elurepro.runlog import session_hparams
    except Exception as err:  # optional dependency: the analysis goes on without it
        return f"TensorBoard output skipped ({type(err).__name__}: {err})"
    try:
        sessions = _write_sessions(members)
        roots: dict[Path, list[MemberRun]] = {}
        for m in members:
            roots.setdefault(m.sweep_folder, []).append(m)
        notes = []
        for root, ms in roots.items():
            metrics = headline_metrics(ms)
            axis = x_axis(ms)
            _clear_events(root / MEAN_STD_DIR)
            _clear_events(root / ANALYSIS_DIR)
            configs = _write_mean_std(root, ms, metrics, axis)
            hparams = [session_hparams(m.info, disk_status(m)) for m in ms]
            with SummaryWriter(log_dir=str(root / ANALYSIS_DIR)) as writer:
                writer.file_writer.add_summary(experiment_summary(hparams, metrics))
                writer.add_custom_scalars(layout(experiment, metrics, axis, steps_per_epoch(ms)))
                for stem, fig in figures.items():
                    writer.add_figure(f"{experiment}/{stem}", fig, close=False)
            notes.append(
                f"{len(ms)} member sessions, mean ± std over seeds of {configs} "
                f"configuration(s) (x = {axis}) and {len(figures)} figure(s): "
                f"tensorboard --logdir {root}"
            )
        _remove_legacy(Path(runs_dir))
    except Exception as err:  # a read-only runs folder must not lose the tables and figures
        return (
            f"TensorBoard output failed ({type(err).__name__}: {err}); tables and figures are fine"
        )
    written = f" ({sessions} HParams session(s) written by this analysis)" if sessions else ""
    return "TensorBoard: " + "; ".join(notes) + written
