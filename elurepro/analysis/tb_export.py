"""TensorBoard output of the analysis, written into each sweep folder beside its members.

``tensorboard --logdir`` on the sweep folder, or on any folder above it up to the whole runs
folder, then shows one run per member (``<group>/s<seed>``: its curves, histograms, text and,
once it has ended, its HParams session, all written by the trainer; while it trains, its
Running session in ``<group>/s<seed>/_running``) and, from here:

- ``_mean_std/<group>``: one run per configuration with the mean over its finished seeds of
  every headline metric and mean ∓ std (tags ``mean_std@<sweep tag>/<metric>``, ``.../lower``,
  ``.../upper``), the series of the Custom Scalars tab's margin charts. The tags name the sweep,
  because a chart draws its tags from every run it is shown: one sweep's chart never draws
  another's runs. The step is the epoch where the experiment counts in epochs (and every point
  is at a whole epoch), else the iteration. The runs sit under a name of their own, never under
  a member's tags, so ``^elu-`` still selects the ELU members only.
- ``_analysis``: the report's figures (Images tab), the Custom Scalars layout (one margin chart
  per headline metric, its title naming the configurations it draws) and the HParams experiment
  (``dashboard.tfevents.experiment``: the columns with their types and values, the metric
  columns).
- ``hp/<headline>`` in each finished member's run (``result_hp.tfevents.<ns>``, named to sort
  after the member's other event files): the protocol's headline quantities of the member as
  the report computes them (Fig. 2: |median activation| over the epochs, the early training
  loss), the HParams tab's first metric columns.

TensorBoard takes the HParams experiment from one run of its logdir, whichever it reads first.
So every ``_analysis`` run under one runs folder gets the same experiment, built from every
member of every sweep under that folder: whichever run TensorBoard picks, its columns, their
values and the metric columns cover the whole folder.

A member whose dashboard file is missing or stale (trained before the trainer wrote them, of an
older format, or a status that changed since: summary.json decides) gets it (re)written, and a
Running session whose trainer is gone (no live claim on the member) is removed; all else the
analysis writes is replaced on every run, so a second analysis never adds a second copy. The
members' training curves are the trainer's: runs trained before per-layer series had groups of
their own keep theirs under ``act/`` (see ``runlog.tb_tag``).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from elurepro.analysis.collect import FINISHED, UNFINISHED, MemberRun, find_member_folders
from elurepro.analysis.headline import figure_tags
from elurepro.analysis.plotting import mean_curve
from elurepro.analysis.table import RunTable, from_members
from elurepro.tblinks import MEAN_STD_DIR, custom_scalars_url, mean_std_url

if TYPE_CHECKING:
    from elurepro.analysis.context import Analysis

ANALYSIS_DIR = "_analysis"
MEAN_STD_TAG = "mean_std"
HEADLINE_TAG = "hp"
HEADLINE_FILE = "result_hp.tfevents"  # + ".<ns>" in a finished member's folder
EXPERIMENT_FILE = "dashboard.tfevents.experiment"  # in _analysis: sorts before the writer's file
_PER_LAYER = re.compile(r"/layer\d+$")
_DISCRETE_MAX = 10  # TensorBoard's HParams tab offers ticks for fewer values than this
_DESCRIPTIONS = {
    "name": "the row: a configuration of its sweep (<unit>[+bn][-lr<lr>]), the mean over its "
    "finished seeds, or a diverged member (<configuration>/s<seed>); the Trial ID is the sweep "
    "tag and this",
    "unit": "activation function with its non-default parameters",
    "status": "finished, diverged (non-finite training loss) or running (in the row it joins "
    "if it finishes; its session status is Running)",
    "diverged_at": "iteration at which a diverged member's training loss became non-finite",
    "lr": "the member's learning rate",
    "batchnorm": "batch normalization before each activation",
    "activation_": "a parameter of the activation function",
    "experiment": "the experiment (configs/experiment/)",
    "sweep": "the tag that starts the row's Trial ID, then the sweep folder: "
    "<data>-<budget>/d<data fingerprint>-c<configuration>",
}


def disk_status(member: MemberRun) -> str:
    """The member's status as its folder says now (summary.json), not as an analysis with
    ``--partial`` may have relabelled it in memory."""
    try:
        status = json.loads((member.folder / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return UNFINISHED
    return status if status in ("finished", "diverged") else UNFINISHED


def _is_headline(name: str) -> bool:
    """Training and evaluation metrics and the pooled median activation; not per-layer values,
    the learning rate or the analysis's own values."""
    return "/" in name and not _PER_LAYER.search(name) and not name.startswith(f"{HEADLINE_TAG}/")


def _metric_order(name: str) -> tuple:
    # What the paper compares first: training loss, evaluation errors, the median activation;
    # then the training error and the evaluation losses.
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


def headline_metrics(table: RunTable, members: Sequence[MemberRun]) -> list[str]:
    """The scalar tags worth a column and a chart, the paper's comparisons first."""
    names = table.logged(members)
    names |= {n for m in members for n in ((m.summary or {}).get("final") or {})}
    return sorted((n for n in names if _is_headline(n)), key=_metric_order)


def x_axis(table: RunTable, members: Sequence[MemberRun]) -> str:
    """'epoch' where the experiment counts in epochs and every point of the finished members
    (those the mean curves are made of) is at a whole epoch, else 'step'."""
    units = set()
    for m in members:
        config = (m.provenance or m.summary or {}).get("config") or {}
        units.add((config.get("train") or {}).get("unit"))
    if units != {"epoch"}:
        return "step"
    finished = [table.index(m) for m in members if m.status == FINISHED]
    epochs = table.rows["epoch"][np.isin(table.rows["member"], finished)]
    epochs = epochs[~np.isnan(epochs)]
    return "epoch" if bool(np.all(np.abs(epochs - np.round(epochs)) < 1e-6)) else "step"


def mean_std_prefix(member_folder: Path) -> str:
    """The tag prefix of a sweep's mean ± std series (``mean_std@3f2a/``)."""
    from elurepro.runlog import sweep_tag

    return f"{MEAN_STD_TAG}@{sweep_tag(member_folder)}/"


# ---------------------------------------------------------------- the HParams experiment


def experiment_summary(
    hparams: Sequence[Mapping[str, Any]], metrics: Sequence[tuple[str, str]]
) -> Any:
    """The HParams experiment: every hyperparameter any session has (keyed by its HParams name,
    ``1.unit``), typed (string: a category with its values, bool, or float64 with its values or
    its range), and the metric columns ``(tag, description)``."""
    from google.protobuf import struct_pb2
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
    from tensorboard.plugins.hparams import metadata as hp_metadata

    from elurepro.runlog import hparam_column, hparam_key, hparam_name, hparams_summary

    status, row = hparam_name("status"), hparam_name("name")
    infos = []
    for name in sorted({name for hp in hparams for name in hp}):
        values = [hp[name] for hp in hparams if name in hp]
        info = api_pb2.HParamInfo(
            name=name,
            display_name=hparam_key(name),
            description=_DESCRIPTIONS[hparam_column(hparam_key(name))],
            # The name and status columns are always among the five the tab shows at first:
            # the name is what the Trial ID column cuts, the status tells a diverged row from a
            # result (see runlog.HPARAM_COLUMNS on the order).
            differs=len(set(values)) > 1 or name in (status, row),
        )
        if name == row:  # one value per row: filtered by a regex rather than a tick each
            info.type = api_pb2.DATA_TYPE_STRING
            infos.append(info)
            continue
        if all(isinstance(v, bool) for v in values):
            info.type, field, distinct = api_pb2.DATA_TYPE_BOOL, "bool_value", sorted(set(values))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            info.type, field = api_pb2.DATA_TYPE_FLOAT64, "number_value"
            distinct = sorted({float(v) for v in values})
            if len(distinct) >= _DISCRETE_MAX:  # a range filter rather than a regex on numbers
                info.domain_interval.min_value = distinct[0]
                info.domain_interval.max_value = distinct[-1]
                infos.append(info)
                continue
        else:
            info.type, field = api_pb2.DATA_TYPE_STRING, "string_value"
            distinct = sorted({str(v) for v in values})
            if name == status:
                distinct = ["finished", "diverged", "running"]
        info.domain_discrete.CopyFrom(
            struct_pb2.ListValue(values=[struct_pb2.Value(**{field: v}) for v in distinct])
        )
        infos.append(info)
    metric_infos = [
        api_pb2.MetricInfo(
            name=api_pb2.MetricName(group="", tag=tag), display_name=tag, description=description
        )
        for tag, description in metrics
    ]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
    return hparams_summary(
        hp_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def runs_root(sweep_folder: Path, experiment: str, fallback: Path) -> Path:
    """The runs folder a sweep folder (``<runs>/<experiment>/<data>-<budget>/<sweep>``) is in;
    `fallback` (the folder the analysis was given) for a folder not laid out so."""
    folder = Path(sweep_folder).absolute()
    if len(folder.parents) > 2 and folder.parents[1].name == experiment:
        return folder.parents[2]
    return Path(fallback).absolute()


def folder_experiment(root: Path) -> Any:
    """The HParams experiment of every member under the runs folder `root`: each member that
    has a session (it has ended, or is training) gives its values, and each experiment its
    metric columns, the protocol's headline quantities first."""
    from elurepro.analysis.headline import headlines_for
    from elurepro.runlog import diverged_at_step, running_sessions, session_hparams

    hparams, finals, experiments = [], set(), {}
    for folder in find_member_folders(root):
        try:
            info = json.loads((folder / "member.json").read_text())
        except (OSError, ValueError):
            continue  # not a member this version reads
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            summary = None  # still training, or stopped before the end
        status = summary.get("status") if isinstance(summary, dict) else None
        if status not in ("finished", "diverged"):
            status = "running" if running_sessions(folder) else None
        if status is None or not isinstance(info, dict):
            continue
        hparams.append(session_hparams(folder, info, status, diverged_at_step(folder)))
        if summary is not None:
            finals |= set(summary.get("final") or {})
        experiments.setdefault(str(info.get("experiment")), None)
    metrics = []
    for experiment in experiments:
        for h in headlines_for(experiment):
            metrics.append(
                (
                    f"{HEADLINE_TAG}/{h.key}",
                    f"{experiment}: {h.label} (headline of the protocol, from the analysis)",
                )
            )
    metrics = list(dict(metrics).items())
    last = "last logged value; a row's value is the mean over its seeds"
    metrics += [(m, last) for m in sorted(filter(_is_headline, finals), key=_metric_order)]
    return experiment_summary(hparams, metrics)


def write_folder_experiment(root: Path, sweep_folders: Sequence[Path]) -> list[str]:
    """The HParams experiment of the runs folder `root`, written into every ``_analysis`` run
    under it and of `sweep_folders` (see the module docstring); returns what could not be
    written."""
    from tensorboard.compat.proto.event_pb2 import Event

    from elurepro.runlog import write_events

    failed = []
    summary = folder_experiment(root)
    events = [
        Event(wall_time=time.time(), file_version="brain.Event:2"),
        Event(wall_time=time.time(), step=0, summary=summary),
    ]
    targets = set(root.glob(f"*/*/*/{ANALYSIS_DIR}"))
    targets |= {Path(s).absolute() / ANALYSIS_DIR for s in sweep_folders}
    for target in sorted(targets):
        try:
            target.mkdir(parents=True, exist_ok=True)
            write_events(target / EXPERIMENT_FILE, events)
        except OSError as err:  # another sweep's folder that is not ours to write
            failed.append(f"{target} ({err.strerror or err})")
    return failed


# ---------------------------------------------------------------- member files


def trainer_alive(folder: Path) -> bool:
    """Whether a worker holds a live claim on the member (``store/claims.py``): is training it."""
    from elurepro.store.claims import LOCK, is_stale, read_claim
    from elurepro.store.work import StoreConfig

    claim = read_claim(Path(folder) / LOCK)
    return claim is not None and not is_stale(claim, StoreConfig.stale_after_s)


def _write_sessions(members: Sequence[MemberRun]) -> int:
    """Write the dashboard file of every member without one of its current status, and remove
    the Running session of a member that nobody trains any more (its worker was killed)."""
    from elurepro.runlog import (
        dashboard_status,
        remove_running_session,
        running_sessions,
        write_dashboard,
    )

    written = 0
    for m in members:
        status = disk_status(m)
        if status == UNFINISHED and running_sessions(m.folder) and not trainer_alive(m.folder):
            for path in running_sessions(m.folder):
                remove_running_session(path)
        if dashboard_status(m.folder) == status:
            continue  # the trainer wrote it (or an earlier analysis did)
        provenance = dict(m.provenance or {})
        for key, value in (m.summary or {}).items():
            provenance.setdefault(key, value)
        write_dashboard(m.folder, m.info, provenance, status)
        written += 1
    return written


def _write_headlines(a: Analysis) -> int:
    """``hp/<headline>`` in the run of every finished member: the protocol's headline
    quantities, as the report computes them. Under a new file name each time, later in sorted
    order (the previous one removed): a running TensorBoard reads the new values at the same
    step over the old."""
    from tensorboard.compat.proto.event_pb2 import Event
    from torch.utils.tensorboard.summary import scalar

    from elurepro.analysis.headline import headline_metric, headlines_for, member_value
    from elurepro.runlog import write_events

    if any((m.summary or {}).get("partial_at_step") is not None for m in a.members):
        return 0  # --partial cut every member short: not the members' results
    wanted = [(h, headline_metric(a, h)) for h in headlines_for(a.experiment)]
    written = 0
    for m in a.members:
        step = a.table().last_step(m)
        if disk_status(m) != FINISHED or step is None:
            continue
        values = {h.key: member_value(a, m, h, metric) for h, metric in wanted if metric}
        now = time.time()
        events = [Event(wall_time=now, file_version="brain.Event:2")]
        for key, value in values.items():
            if value is not None and math.isfinite(value):
                summary = scalar(f"{HEADLINE_TAG}/{key}", value)
                events.append(Event(wall_time=now, step=step, summary=summary))
        path = write_events(m.folder / f"{HEADLINE_FILE}.{time.time_ns()}", events)
        for old in m.folder.glob(f"{HEADLINE_FILE}.*"):
            if old != path:
                old.unlink(missing_ok=True)
        written += 1
    return written


# ---------------------------------------------------------------- mean ± std, layout


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


def _write_mean_std(
    root: Path,
    table: RunTable,
    members: Sequence[MemberRun],
    metrics: Sequence[str],
    axis: str,
    prefix: str,
) -> list[str]:
    """The ``_mean_std/<group>`` runs; returns their configurations."""
    from torch.utils.tensorboard import SummaryWriter

    groups: dict[str, list[MemberRun]] = {}
    for m in members:
        if m.status == FINISHED:
            groups.setdefault(m.group, []).append(m)
    for group, runs in sorted(groups.items()):
        with SummaryWriter(log_dir=str(root / MEAN_STD_DIR / group)) as writer:
            for metric in metrics:
                curve = mean_curve([table.series(m, metric, x=axis) for m in runs])
                for x, mean, std in zip(curve.x, curve.mean, curve.std):
                    step = int(round(x))
                    tag = f"{prefix}{metric}"
                    writer.add_scalar(tag, mean, step)
                    writer.add_scalar(f"{tag}/lower", mean - std, step)
                    writer.add_scalar(f"{tag}/upper", mean + std, step)
    return sorted(groups)


def steps_per_epoch(table: RunTable, members: Sequence[MemberRun]) -> float | None:
    """Iterations per epoch, as the records show them (None where they do not say)."""
    for m in members:
        point = table.epoch_point(m)
        if point is not None:
            return float(point[0]) / float(point[1])
    return None


def layout(
    experiment: str,
    sweep: str,
    metrics: Sequence[str],
    axis: str,
    configs: Sequence[str],
    prefix: str,
    per_epoch: float | None = None,
) -> dict:
    """The Custom Scalars layout (``SummaryWriter.add_custom_scalars``'s form): one category
    per sweep, one margin chart per headline metric; each ``_mean_std/<group>`` run of the sweep
    draws one line with its ± std band, and the chart's title names them (the chart itself has
    no legend)."""
    x = axis if axis == "epoch" or not per_epoch else f"step ({per_epoch:.0f} per epoch)"
    title = f"{experiment} {sweep}: mean ± std over finished seeds, x = {x}"
    charts = {}
    # TensorBoard (2.21) draws a category's charts last to first: listed in reverse, they show
    # in the order of `metrics` (training loss first).
    names = ", ".join(configs)
    for metric in reversed(metrics):
        tag = f"{prefix}{metric}"
        charts[f"{metric}: {names}"] = ["Margin", [tag, f"{tag}/lower", f"{tag}/upper"]]
    return {title: charts}


def _table_of(members: Sequence[MemberRun], analysis: Analysis | None) -> RunTable:
    # The analysis's table where it holds these members (read once, cut by --partial).
    if analysis is not None and {id(m) for m in members} <= {id(m) for m in analysis.members}:
        return analysis.table()
    return from_members(members)


def export(
    runs_dir: str | Path,
    members: Sequence[MemberRun],
    figures: Mapping[str, Figure],
    experiment: str,
    analysis: Analysis | None = None,
) -> str:
    """Write the TensorBoard output of one analysed sweep (see the module docstring) into the
    sweep folder(s) of `members` (the headline values only with the `analysis`); returns what
    to open, never raises."""
    try:
        from torch.utils.tensorboard import SummaryWriter

        from elurepro.runlog import sweep_label
    except Exception as err:  # optional dependency: the analysis goes on without it
        return f"TensorBoard output skipped ({type(err).__name__}: {err})"
    try:
        sessions = _write_sessions(members)
        headlines = _write_headlines(analysis) if analysis is not None else 0
        table = _table_of(members, analysis)
        roots: dict[Path, list[MemberRun]] = {}
        for m in members:
            roots.setdefault(m.sweep_folder, []).append(m)
        lines = []
        for root, ms in roots.items():
            metrics = headline_metrics(table, ms)
            axis = x_axis(table, ms)
            prefix = mean_std_prefix(ms[0].folder)
            _clear_events(root / MEAN_STD_DIR)
            _clear_events(root / ANALYSIS_DIR)
            configs = _write_mean_std(root, table, ms, metrics, axis, prefix)
            charts = layout(
                experiment,
                sweep_label(ms[0].folder),
                metrics,
                axis,
                configs,
                prefix,
                steps_per_epoch(table, ms),
            )
            with SummaryWriter(log_dir=str(root / ANALYSIS_DIR)) as writer:
                writer.add_custom_scalars(charts)
                for stem, fig in figures.items():
                    writer.add_figure(f"{experiment}/{stem}", fig, close=False)
            tags = [t for t in figure_tags(experiment) if t in metrics]
            lines += [
                f"TensorBoard: tensorboard --logdir {root}  (or any folder above it)",
                f"  the figure, mean per configuration: {mean_std_url(root, tags, prefix)}",
                f"  mean ± std bands (Custom Scalars): {custom_scalars_url(root)}",
                f"  ({len(ms)} members, {len(configs)} configuration(s) with finished seeds, "
                f"x = {axis}, {len(figures)} figure(s) in Images)",
            ]
        failed = write_folder_experiment(
            runs_root(next(iter(roots)), experiment, Path(runs_dir)), list(roots)
        )
    except Exception as err:  # a read-only runs folder must not lose the tables and figures
        return (
            f"TensorBoard output failed ({type(err).__name__}: {err}); tables and figures are fine"
        )
    if sessions or headlines:
        lines.append(
            f"  (this analysis wrote the dashboard file of {sessions} member(s) and the "
            f"headline values of {headlines})"
        )
    if failed:
        lines.append("  HParams columns not updated in: " + "; ".join(failed))
    return "\n".join(lines)
