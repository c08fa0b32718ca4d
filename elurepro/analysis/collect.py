"""Find trained members under a runs folder and load what the trainer wrote for each.

A member's folder is ``<runs>/<experiment>/<data>-<budget>/d<fp8>-c<cfg8>/<group>/s<seed>/``
(``store/identity.py``), with member.json (``key``/``sweep``/``data`` among its keys),
metrics.jsonl, provenance.json and, once it has ended, summary.json. Folders of the layout
before the run store are refused with a line naming ``scripts/migrate_runs.py``.
"""

from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elurepro.activations import is_own_unit, parse_activation
from elurepro.activations import unit_label as own_unit_label
from elurepro.errors import ConfigError, ElureproError

FINISHED = "finished"
DIVERGED = "diverged"
UNFINISHED = "unfinished"

_REQUIRED_KEYS = ("id", "experiment", "dataset", "activation", "seed", "group")
MIGRATE = "run `python scripts/migrate_runs.py RUNS` once"


@dataclass
class MemberRun:
    """One trained network as the analysis sees it: identity (member.json), curves, summary.

    (The training side's description of a member to train is ``MemberSpec``.)
    """

    folder: Path
    id: str
    experiment: str
    dataset: str
    activation: str
    group: str
    seed: int
    batchnorm: bool = False
    lr: float | None = None
    budget: str | None = None
    activation_params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None

    @property
    def sweep_folder(self) -> Path:
        """The ``d<fp8>-c<cfg8>`` folder."""
        return self.folder.parent.parent

    @property
    def unit(self) -> str:
        """The unit's label (``elu``, ``lrelu_alpha0.3``), as the trainer names groups."""
        return unit_label(self.activation, self.activation_params)

    @property
    def data(self) -> dict[str, Any]:
        """Data set record (name, fingerprint, official, description): member.json, else the
        summary, else provenance.json."""
        for source in (self.info, self.summary or {}, self.provenance or {}):
            data = source.get("data")
            if isinstance(data, dict) and data:
                return dict(data)
        return {}

    @property
    def fingerprint(self) -> str | None:
        value = self.data.get("fingerprint")
        return None if value is None else str(value)

    @property
    def official(self) -> bool | None:
        value = self.data.get("official")
        return None if value is None else bool(value)

    @property
    def sweep(self) -> tuple[str, ...]:
        """What a report may not mix: the trainer's sweep id (experiment, mathematics, data,
        budget)."""
        return ("sweep", self.experiment, str(self.info["sweep"]))

    @property
    def config_tag(self) -> str | None:
        """``c<cfg8>`` of the ``d<fp8>-c<cfg8>`` folder, else None."""
        match = _SWEEP_FOLDER.match(self.sweep_folder.name)
        return match.group(2) if match else None

    def eval_images(self, split: str) -> int | None:
        """Images in the evaluation split `split` (``eval_images`` of summary.json, else of
        provenance.json), if known."""
        for source in (self.summary or {}, self.provenance or {}):
            value = (source.get("eval_images") or {}).get(split)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return int(value)
        return None

    @property
    def status(self) -> str:
        if self.summary is None:
            return UNFINISHED
        return str(self.summary["status"])

    @property
    def diverged_at_step(self) -> int | None:
        if self.summary is None or self.summary.get("diverged_at_step") is None:
            return None
        return int(self.summary["diverged_at_step"])


def find_member_folders(runs_dir: str | Path) -> list[Path]:
    """Every folder under `runs_dir` (recursively) that holds a member.json, sorted."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ElureproError(
            f"runs folder {root} does not exist or is not a folder; train the experiment first "
            "or pass the folder that holds its run folders"
        )
    return sorted(path.parent for path in root.rglob("member.json"))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ElureproError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ElureproError(f"{path} is not valid JSON ({err}); the file is corrupt") from None


def read_metrics(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse metrics.jsonl; a broken last line (run killed mid-write) only gives a warning."""
    lines = path.read_text().splitlines()
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i == last:
                notes.append(f"{path}: ignored a truncated last line {i + 1} ({err.msg})")
                continue
            raise ElureproError(
                f"{path} line {i + 1} is not valid JSON ({err.msg}); the file is corrupt"
            ) from None
        if not isinstance(record, dict) or "step" not in record:
            raise ElureproError(f"{path} line {i + 1} is not a metrics record with a 'step'")
        records.append(record)
    return records, notes


_SWEEP_FOLDER = re.compile(r"^d([0-9a-f]+)-c([0-9a-f]+)$")


def unit_label(activation: str, params: dict[str, Any] | None = None) -> str:
    """`elurepro.activations.parse_activation`'s label; a unit this registry does not know
    keeps its name, with its parameters appended."""
    params = dict(params or {})
    try:
        key = (activation, tuple(sorted(params.items())))
        hash(key)
    except TypeError:
        return _label(activation, params)
    return _cached_label(*key)


@functools.lru_cache(maxsize=256)
def _cached_label(activation: str, params: tuple[tuple[str, Any], ...]) -> str:
    return _label(activation, dict(params))


def _label(activation: str, params: dict[str, Any]) -> str:
    if is_own_unit(activation):  # labelled from what the run stored; its module is not imported
        return own_unit_label(activation, params)
    try:
        return parse_activation({"name": activation, **params}).label
    except ConfigError:
        return str(activation).lower() + "".join(f"_{k}{v}" for k, v in sorted(params.items()))


def load_member(folder: str | Path) -> MemberRun:
    """Load one member folder; corrupt or missing files raise an ElureproError naming them."""
    folder = Path(folder)
    info_path = folder / "member.json"
    info = _read_json(info_path)
    if not isinstance(info, dict):
        raise ElureproError(f"{info_path} must hold a JSON object")
    if not info.get("sweep"):
        raise ElureproError(f"{folder} is of the layout before the run store; {MIGRATE}")
    missing = [key for key in _REQUIRED_KEYS if key not in info]
    if missing:
        raise ElureproError(f"{info_path} lacks the key(s) {', '.join(missing)}")

    summary = None
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary = _read_json(summary_path)
        if not isinstance(summary, dict) or summary.get("status") not in (FINISHED, DIVERGED):
            raise ElureproError(
                f"{summary_path} must hold an object whose 'status' is 'finished' or 'diverged'"
            )

    notes: list[str] = []
    metrics_path = folder / "metrics.jsonl"
    if metrics_path.exists():
        records, notes = read_metrics(metrics_path)
    elif summary is not None:
        raise ElureproError(f"{metrics_path} is missing although the run has a summary.json")
    else:
        records = []
        notes.append(f"{metrics_path} does not exist yet (run not started)")
    for note in notes:
        warnings.warn(note, stacklevel=2)

    provenance = None
    prov_path = folder / "provenance.json"
    if prov_path.is_file():
        provenance = _read_json(prov_path)
        if not isinstance(provenance, dict):
            raise ElureproError(f"{prov_path} must hold a JSON object")

    lr = info.get("lr")
    return MemberRun(
        folder=folder,
        id=str(info["id"]),
        experiment=str(info["experiment"]),
        dataset=str(info["dataset"]),
        activation=str(info["activation"]),
        group=str(info["group"]),
        seed=int(info["seed"]),
        batchnorm=bool(info.get("batchnorm", False)),
        lr=None if lr is None else float(lr),
        budget=None if info.get("budget") is None else str(info["budget"]),
        activation_params=dict(info.get("activation_params") or {}),
        info=info,
        records=records,
        summary=summary,
        warnings=notes,
        provenance=provenance,
    )


def collect_members(runs_dir: str | Path) -> list[MemberRun]:
    """Load every member found under `runs_dir`."""
    return [load_member(folder) for folder in find_member_folders(runs_dir)]
