"""Per-member logs: metrics.jsonl (what the analysis reads), TensorBoard events, summary.json.

A member's folder is one TensorBoard run. SummaryWriter's event files hold its time series
(scalars with the step as x, histograms of per-unit mean activations) under the keys of
metrics.jsonl, except that a per-layer series goes to a group of its own (``tb_tag``:
``act/median/layer2`` -> ``act_median/layer2``): TensorBoard's Time Series groups its cards by
the tag's part before the first ``/``, and Fig. 2's ``act/median`` would otherwise be one card
among hundreds (a histogram card per run and layer).

The member's other files, named so that they sort around SummaryWriter's
``events.out.tfevents.*`` in the order they are written (a TensorBoard started with
``--load_fast=false`` reads a run's files in sorted order and never goes back to an earlier one):

- ``dashboard.tfevents.unfinished.<format>``, written when training starts: its provenance and
  configuration as Markdown text;
- ``result.tfevents.<status>.<format>``, which replaces it once the member has finished or
  diverged: the text again, with the final status, and its HParams session.

TensorBoard keeps the first HParams session record it reads for a run and never replaces it, so
a session written into the member's run while it trains could never take its final group and
status on a running TensorBoard. A member that trains gets its session there once, when it
ends. While it trains, a run of its own, ``<member>/_running``, holds a session with status
Running in the row it joins when it finishes; the end removes that run, and TensorBoard (both
loaders) drops a run whose folder is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import torch
import yaml
from tensorboard.compat.proto import types_pb2
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from torch.utils.tensorboard import SummaryWriter

from elurepro.activations import parse_activation
from elurepro.checkpoint import file_mode, write_json
from elurepro.errors import ConfigError
from elurepro.store.claims import LOCK, read_claim

DASHBOARD = "dashboard.tfevents"  # "tfevents" in the name makes it an event file
RESULT = "result.tfevents"  # the dashboard file of a member that has ended
# The dashboard files' format: a file of another format (or none) is rewritten by the analysis.
DASHBOARD_FORMAT = "3"
STATUSES = ("finished", "diverged", "unfinished")
RUNNING_DIR = "_running"  # the run of a training member's Running session
RUNNING_FILE = "running.tfevents"  # + ".<token>": whose the session is
# How TensorBoard's HParams tab shows (and filters) each status; an unfinished member has no
# session in its own run (see the module docstring).
_SESSION_STATUS = {"finished": api_pb2.STATUS_SUCCESS, "diverged": api_pb2.STATUS_FAILURE}
_PER_LAYER_KEY = re.compile(r"^([^/]+)/([^/]+)/(layer\d+)$")


def tb_tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl key (or histogram name): the key itself, except
    a per-layer series, which goes to a group of its own (``act/median/layer2`` ->
    ``act_median/layer2``, ``act/units/layer1`` -> ``act_units/layer1``)."""
    match = _PER_LAYER_KEY.match(key)
    return f"{match[1]}_{match[2]}/{match[3]}" if match else key


class MemberLog:
    """One member's folder. ``resume_step`` drops records written after the last checkpoint;
    ``epoch_axis`` adds the ``epoch`` of each record as a scalar (where the protocol counts
    epochs, so that its charts can be read against the epoch)."""

    def __init__(
        self,
        folder: Path,
        member: dict[str, Any],
        resume_step: int | None,
        epoch_axis: bool = False,
    ) -> None:
        self.folder = folder
        self.epoch_axis = epoch_axis
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "member.json", member)
        self.metrics_path = folder / "metrics.jsonl"
        self.member = member
        self._running: Path | None = None  # the Running session this log wrote, if any
        if resume_step is None:
            # A fresh start: whatever an abandoned attempt left here is not this run's.
            self.metrics_path.unlink(missing_ok=True)
            for old in folder.glob("*tfevents*"):  # its curves, dashboard, analysis values
                old.unlink()
            shutil.rmtree(folder / RUNNING_DIR, ignore_errors=True)
        else:
            _truncate_after(self.metrics_path, resume_step)
        # purge_step makes TensorBoard drop events from the lost stretch after a crash.
        self.tb = SummaryWriter(
            str(folder), purge_step=None if resume_step is None else resume_step + 1
        )
        self._file = self.metrics_path.open("a")

    def log(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        step = record["step"]
        for key, value in record.items():
            if "/" in key or key == "lr" or (key == "epoch" and self.epoch_axis):
                self.tb.add_scalar(tb_tag(key), value, step)

    def histograms(self, step: int, vectors: Mapping[str, torch.Tensor]) -> None:
        """One histogram per name (e.g. ``act/units/layer1``, the per-unit mean activations of
        a layer; written under ``tb_tag`` of the name) at ``step``."""
        for name, values in vectors.items():
            values = values.detach().cpu().double()
            # A member on its way to diverging can have non-finite units; a histogram of the
            # finite ones still shows where the others are.
            values = values[torch.isfinite(values)]
            if values.numel():
                # 30 equal bins: what TensorBoard redraws them into anyway.
                self.tb.add_histogram(tb_tag(name), values, step, bins=30)

    def dashboard(self, provenance: Mapping[str, Any], status: str) -> Path:
        """Write the member's dashboard file for ``status``. ``unfinished`` means that this log
        is training the member (from its start, or resumed): that also gives it a Running
        session, until it ends (``finished``, ``diverged``) or this log is closed."""
        path = write_dashboard(self.folder, self.member, provenance, status)
        if status == "unfinished":
            self._running = write_running_session(self.folder, self.member)
        else:
            self._running = None  # write_dashboard removed it: the member has ended
        return path

    def close(self) -> None:
        self._file.close()
        self.tb.close()
        if self._running is not None and not _claimed_by_another(self.folder):
            # Stopped before the end: no longer Running. Only its own record goes, and nothing
            # once another worker has taken the member over (that worker's fence: this one
            # writes nothing there any more, see store/claims.py).
            remove_running_session(self._running)
        self._running = None


def _claimed_by_another(folder: Path) -> bool:
    """Whether the member's claim (if it has one) is held by another process."""
    claim = read_claim(Path(folder) / LOCK)
    return claim is not None and (claim.host, claim.pid) != (socket.gethostname(), os.getpid())


def _truncate_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a crash; everything after it is lost anyway
        if record.get("step", math.inf) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    write_json(folder / "summary.json", summary)


@cache
def git_commit() -> str:
    """The commit of the code that ran, with '+dirty' if it had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        # A copy of the code without its .git (a batch node, a container) can be told its commit.
        return os.environ.get("ELUREPRO_GIT_COMMIT", "unknown")
    return head + ("+dirty" if dirty else "")


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix products run in hardware here (AVX512-BF16 / AMX, or a CUDA card
    of compute capability 8.0+); without it the CPU emulates them, far slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    try:  # a private oneDNN query: absent from some builds, where we assume no support
        return torch.backends.mkldnn.is_available() and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({_cpu_model()}, {torch.get_num_threads()} threads)"


@cache
def _cpu_model() -> str:
    """The CPU model ("AMD EPYC", ...) from /proc/cpuinfo where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------- TensorBoard dashboard file

# The HParams columns, in the order the HParams tab is to show them. TensorBoard sorts an
# experiment's columns by name (those whose values differ first) and shows the first five, so
# each column's name starts with its rank (``1.name``); the tab shows the display name.
HPARAM_COLUMNS = (
    "name",  # the row's name without its sweep tag: what the Trial ID column may cut
    "status",
    "diverged_at",
    "unit",
    "lr",
    "batchnorm",
    "activation_",  # one column per parameter: activation_alpha, ...
    "experiment",
    "sweep",
)


def hparam_column(key: str) -> str:
    """The entry of HPARAM_COLUMNS column ``key`` is (``activation_alpha``: ``activation_``)."""
    for column in HPARAM_COLUMNS:
        if key == column or (column.endswith("_") and key.startswith(column)):
            return column
    raise ValueError(f"{key!r} is not an HParams column ({', '.join(HPARAM_COLUMNS)})")


def hparam_name(key: str) -> str:
    """The HParams name of column ``key``: ``1.name``, ``7.activation_alpha``."""
    return f"{HPARAM_COLUMNS.index(hparam_column(key)) + 1}.{key}"


def hparam_key(name: str) -> str:
    """The column of an HParams name: ``1.name`` -> ``name``."""
    return name.split(".", 1)[1]


def dashboard_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    return sorted([*folder.glob(f"{DASHBOARD}.*"), *folder.glob(f"{RESULT}.*")])


def dashboard_path(folder: Path, status: str) -> Path:
    """Sorted before SummaryWriter's files while the member trains, after them once it ended
    (see the module docstring)."""
    return (
        Path(folder)
        / f"{DASHBOARD if status == 'unfinished' else RESULT}.{status}.{DASHBOARD_FORMAT}"
    )


def dashboard_status(folder: Path) -> str | None:
    """The status the member's dashboard file was written with; None without exactly one file
    of the current format and name."""
    files = dashboard_files(folder)
    if len(files) != 1:
        return None
    status = files[0].name.split(".")[2]
    return status if status in STATUSES and files[0] == dashboard_path(folder, status) else None


def unit_label(member: Mapping[str, Any]) -> str:
    """The unit with its non-default parameters (``elu``, ``lrelu_alpha0.3``), as in run names."""
    params = dict(member.get("activation_params") or {})
    try:
        return parse_activation({"name": member["activation"], **params}).label
    except (ConfigError, TypeError):  # a unit this version's registry no longer knows
        extra = "".join(f"_{k}{v}" for k, v in sorted(params.items()))
        return str(member["activation"]).lower() + extra


def sweep_label(folder: Path) -> str:
    """``<data>-<budget>/d<fp8>-c<cfg8>`` for a member folder
    ``.../<data>-<budget>/d<fp8>-c<cfg8>/<group>/s<seed>``; the ``<data>-<budget>`` folder alone
    for the layout before the run store (``.../<data>-<budget>/<population>/members/<id>``)."""
    folder = Path(folder).absolute()
    if folder.parent.name == "members":
        return folder.parents[2].name
    return f"{folder.parents[2].name}/{folder.parents[1].name}"


def sweep_tag(folder: Path) -> str:
    """Four hex digits that tell the member's sweep from the others under one runs folder: what
    keeps names unique (HParams rows, mean ± std tags) and short enough to read whole."""
    return hashlib.sha1(sweep_label(folder).encode()).hexdigest()[:4]


def row_name(member: Mapping[str, Any], status: str) -> str:
    """The member's HParams row within its sweep: its configuration (``elu-lr0.01``), the mean
    over its finished seeds; a member that diverged is a row of its own (``elu-lr1000/s0``),
    never averaged with anything."""
    if status == "diverged":
        return f"{member['group']}/s{member['seed']}"
    return str(member["group"])


def session_group(folder: Path, member: Mapping[str, Any], status: str) -> str:
    """The HParams row (session group, the Trial ID column) of a member: its sweep tag, then
    its row name (``3f2a elu-lr0.01``, ``3f2a elu-lr1000/s0``). The tag comes first: the column
    cuts what does not fit in its 10em (about 16 characters), and the ``name`` column holds the
    rest."""
    return f"{sweep_tag(folder)} {row_name(member, status)}"


def session_hparams(
    folder: Path, member: Mapping[str, Any], status: str, diverged_at: int | None = None
) -> dict[str, bool | float | str]:
    """The member's HParams values, by HParams name: strings for categories, bools for
    switches, numbers for quantities. ``status``: finished, diverged or running. No seed: a row
    of the tab is a configuration, the mean over its seeds (the seed is in each session's run
    name, and in a diverged member's row name)."""
    hp: dict[str, bool | float | str] = {"name": row_name(member, status), "status": status}
    if diverged_at is not None:
        hp["diverged_at"] = int(diverged_at)
    hp["unit"] = unit_label(member)
    if member.get("lr") is not None:
        hp["lr"] = float(member["lr"])
    hp["batchnorm"] = bool(member.get("batchnorm", False))
    for key, value in sorted((member.get("activation_params") or {}).items()):
        if isinstance(value, (bool, int, float, str)):
            hp[f"activation_{key}"] = value
    if member.get("experiment"):
        hp["experiment"] = str(member["experiment"])
    hp["sweep"] = f"{sweep_tag(folder)} {sweep_label(folder)}"
    return {hparam_name(key): value for key, value in hp.items()}


def _value(proto_value: Any, value: bool | float | str) -> None:
    if isinstance(value, bool):
        proto_value.bool_value = value
    elif isinstance(value, (int, float)):
        proto_value.number_value = float(value)
    else:
        proto_value.string_value = str(value)


def hparams_summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    """One HParams record (experiment, session start or end) as a Summary, without TensorFlow."""
    data.version = hparams_metadata.PLUGIN_DATA_VERSION
    meta = hparams_metadata.create_summary_metadata(data)
    return Summary(value=[Summary.Value(tag=tag, metadata=meta)])


def text_event(tag: str, markdown: str, wall_time: float) -> Event:
    """A Markdown text at step 0. A scalar string (not torch's 1-element vector, which the Text
    tab draws as a one-cell table around the text)."""
    meta = text_metadata.create_summary_metadata(display_name=tag, description="")
    tensor = TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=TensorShapeProto(), string_val=[markdown.encode()]
    )
    value = Summary.Value(tag=tag, metadata=meta, tensor=tensor)
    return Event(wall_time=wall_time, step=0, summary=Summary(value=[value]))


def status_text(status: str, diverged_at: int | None) -> str:
    """The status as the Text tab gives it; a divergence with its iteration."""
    if status == "diverged" and diverged_at is not None:
        return f"diverged at iteration {diverged_at} (non-finite training loss); curves end there"
    return status


def provenance_markdown(
    folder: Path,
    member: Mapping[str, Any],
    provenance: Mapping[str, Any],
    status: str,
    diverged_at: int | None = None,
) -> str:
    """Who, what, where: a Markdown table for TensorBoard's Text tab."""
    data = dict(provenance.get("data") or member.get("data") or {})
    official = data.get("official")
    rows = [
        ("member", f"`{member.get('id', folder.name)}` ({folder.parent.name}/{folder.name})"),
        ("status", status_text(status, diverged_at)),
        ("command", f"`{provenance['command']}`" if provenance.get("command") else "unknown"),
        ("git commit", f"`{provenance.get('git_commit', 'unknown')}`"),
        (
            "data",
            f"{data.get('name', member.get('dataset', '?'))}, fingerprint "
            f"`{data.get('fingerprint', 'unknown')}`",
        ),
        ("official data", "unknown" if official is None else str(bool(official)).lower()),
        ("data set", str(data.get("description", ""))),
        (
            "budget",
            f"{provenance.get('budget', member.get('budget', '?'))}, "
            f"{provenance.get('total_steps', '?')} steps",
        ),
        ("device", str(provenance.get("device", "unknown"))),
        ("torch", str(provenance.get("torch", "unknown"))),
        ("member key", f"`{member.get('key', '-')}` (sweep `{member.get('sweep', '-')}`)"),
    ]
    cells = [f"| {name} | {value.replace('|', '/')} |" for name, value in rows]
    return "\n".join(["| | |", "|---|---|", *cells])


def config_markdown(provenance: Mapping[str, Any]) -> str:
    config = provenance.get("config")
    if not config:
        return "no resolved configuration was recorded for this run"
    body = yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=False)
    return f"Resolved configuration:\n\n```yaml\n{body}```"


def diverged_at_step(folder: Path) -> int | None:
    """The iteration summary.json gives for the member's divergence, if any."""
    try:
        step = json.loads((Path(folder) / "summary.json").read_text()).get("diverged_at_step")
    except (OSError, ValueError, AttributeError):
        return None
    return int(step) if isinstance(step, (int, float)) else None


def session_events(
    folder: Path,
    member: Mapping[str, Any],
    status: str,
    start: float,
    end: float,
    diverged_at: int | None = None,
) -> list[Event]:
    """An HParams session (its start and end records) of the member with ``status``:
    finished, diverged or running."""
    info = plugin_data_pb2.SessionStartInfo(
        group_name=session_group(folder, member, status), start_time_secs=start
    )
    for name, value in session_hparams(folder, member, status, diverged_at).items():
        _value(info.hparams[name], value)
    code = _SESSION_STATUS.get(status, api_pb2.STATUS_RUNNING)
    records = [
        (hparams_metadata.SESSION_START_INFO_TAG, {"session_start_info": info}),
        (
            hparams_metadata.SESSION_END_INFO_TAG,
            {"session_end_info": plugin_data_pb2.SessionEndInfo(status=code, end_time_secs=end)},
        ),
    ]
    return [
        Event(
            wall_time=time.time(),
            step=0,
            summary=hparams_summary(tag, plugin_data_pb2.HParamsPluginData(**data)),
        )
        for tag, data in records
    ]


def dashboard_events(
    folder: Path, member: Mapping[str, Any], provenance: Mapping[str, Any], status: str
) -> list[Event]:
    """The events of a member's dashboard file: once the member has finished or diverged its
    HParams session, then its provenance and configuration as text."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    now = time.time()
    diverged_at = diverged_at_step(folder) if status == "diverged" else None
    events = [Event(wall_time=now, file_version="brain.Event:2")]
    if status in _SESSION_STATUS:
        start = _mtime(folder / "provenance.json") or now
        end = _mtime(folder / "summary.json") or now
        events += session_events(folder, member, status, start, end, diverged_at)
    markdown = provenance_markdown(folder, member, provenance, status, diverged_at)
    events.append(text_event("provenance", markdown, now))
    events.append(text_event("config", config_markdown(provenance), now))
    return events


def write_events(path: Path, events: list[Event]) -> Path:
    """Write an event file as a whole, atomically: a TensorBoard reading the folder sees the
    old file or the new one, never half of one."""
    path = Path(path)
    # The temporary name has no "tfevents" in it, so TensorBoard never reads a partial file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".events.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            writer = RecordWriter(f)
            for event in events:
                writer.write(event.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_dashboard(
    folder: Path, member: Mapping[str, Any], provenance: Mapping[str, Any], status: str
) -> Path:
    """Replace the member's dashboard file by one for ``status``; once the member has ended,
    its Running session goes (after the final one is there, so that its row never lapses)."""
    folder = Path(folder)
    path = write_events(
        dashboard_path(folder, status), dashboard_events(folder, member, provenance, status)
    )
    for old in dashboard_files(folder):
        if old != path:
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    if status in _SESSION_STATUS:
        shutil.rmtree(folder / RUNNING_DIR, ignore_errors=True)
    return path


def write_running_session(folder: Path, member: Mapping[str, Any]) -> Path:
    """Show the member as Running in TensorBoard's HParams tab, in the row it joins if it
    finishes: a session in a run of its own (``<member>/_running``) that ``write_dashboard``
    removes when the member ends. Returns the file, named by a token of its own, so that a
    worker that stops removes its record only (``remove_running_session``)."""
    run = Path(folder) / RUNNING_DIR
    run.mkdir(exist_ok=True)
    now = time.time()
    events = [Event(wall_time=now, file_version="brain.Event:2")]
    events += session_events(Path(folder), member, "running", now, now)
    return write_events(run / f"{RUNNING_FILE}.{uuid.uuid4().hex[:12]}", events)


def remove_running_session(path: Path) -> None:
    """Remove a Running session that ``write_running_session`` wrote, and its run once empty."""
    path = Path(path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    with contextlib.suppress(OSError):  # gone, or another worker's session is in it
        path.parent.rmdir()


def running_sessions(folder: Path) -> list[Path]:
    """The Running sessions in a member's folder (one per worker that trains it)."""
    return sorted((Path(folder) / RUNNING_DIR).glob(f"{RUNNING_FILE}.*"))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
