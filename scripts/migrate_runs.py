"""Move run folders of elurepro's earlier layouts into the run store's layout, once.

    python scripts/migrate_runs.py RUNS_DIR [--dry-run]

What it finds under RUNS_DIR, and what it does with it:

- members of the layout before the run store, ``.../<pop>-<hash8>/members/<id>/`` (member.json
  without a sweep id, provenance.json in the population folder): each moves to
  ``<experiment>/<data>-<budget>/d<fp8>-c<cfg8>/<group>/s<seed>/`` with member.json given its
  key, sweep id and data record, and the population's provenance.json copied beside it; the data
  and configuration come from the member's summary.json, else the population's provenance.json,
  else another member of its population (one population: one configuration, one data set). The
  rest of a population folder (provenance, checkpoint) moves to its sweep's ``_populations/``.
- ``analysis.tfevents.*`` in member folders and ``_hparams/``, ``_figures/`` event folders:
  TensorBoard output of earlier analyses, which the next analysis writes anew; removed.

A member whose files do not say what its folder must be is left where it is, with one line
saying why. A second run finds nothing left to do.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elurepro.activations import parse_activation
from elurepro.errors import ConfigError
from elurepro.members import MemberSpec
from elurepro.store.identity import SweepIdentity, config_key, mathematics
from elurepro.store.sweep import POPULATIONS, Sweep

OLD_HEADLINE_FILE = "analysis.tfevents"  # the headline values' file before result_hp.tfevents
OLD_ANALYSIS_DIRS = ("_hparams", "_figures")  # where early analyses wrote under the runs folder


@dataclass
class Move:
    """One old member folder and where it goes (`target` None: it stays, for `reason`)."""

    source: Path
    target: Path | None = None
    reason: str = ""
    info: dict[str, Any] | None = None  # the new member.json
    sweep: Sweep | None = None
    config: dict[str, Any] | None = None
    data: dict[str, Any] | None = None


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def old_members(runs: Path) -> dict[Path, list[Path]]:
    """Population folder -> its old-layout member folders (member.json without a sweep id)."""
    found: dict[Path, list[Path]] = {}
    for path in sorted(runs.rglob("members/*/member.json")):
        info = _read(path)
        if isinstance(info, dict) and not info.get("sweep"):
            found.setdefault(path.parent.parent.parent, []).append(path.parent)
    return found


def _recorded(folder: Path, population: Path, key: str) -> Any:
    """`key` (data or config) as the member's summary, else its population's provenance says."""
    for source in (
        folder / "summary.json",
        folder / "provenance.json",
        population / "provenance.json",
    ):
        value = (_read(source) or {}).get(key)
        if isinstance(value, dict) and value:
            return value
    return None


def _experiment_dir(runs: Path, population: Path, experiment: str) -> Path:
    # The old populations sat in <experiment>/<data>-<budget>/ (tests: in <experiment>/).
    for parent in [population, *population.parents]:
        if parent.name == experiment:
            return parent
        if parent == runs:
            break
    return runs / experiment


def _spec(info: dict[str, Any], config: dict[str, Any]) -> MemberSpec:
    unit = parse_activation({"name": info["activation"], **(info.get("activation_params") or {})})
    lr = float(info.get("lr", 0.01))
    base = (config.get("optim") or {}).get("lr")
    if base is not None:  # what MemberSpec says today: lrs compared, or not optim.lr
        lrs = (config.get("members") or {}).get("lrs")
        in_name = lrs is not None or lr != float(base)
    else:  # the old name says whether it carried the learning rate
        in_name = "@lr=" in str(info.get("group", ""))
    return MemberSpec(unit, bool(info.get("batchnorm", False)), lr, int(info["seed"]), in_name)


def plan_population(runs: Path, population: Path, folders: list[Path]) -> list[Move]:
    """Where each old member of `population` goes; members share data and configuration."""
    shared = {
        key: next((v for f in folders if (v := _recorded(f, population, key))), None)
        for key in ("data", "config")
    }
    moves = []
    for folder in folders:
        move = Move(folder)
        moves.append(move)
        info = _read(folder / "member.json")
        data = _recorded(folder, population, "data") or shared["data"]
        config = _recorded(folder, population, "config") or shared["config"]
        missing = [
            what
            for what, ok in (
                ("data fingerprint", data and data.get("fingerprint")),
                ("configuration", config),
                ("budget", info.get("budget")),
                ("experiment", info.get("experiment")),
                ("seed", "seed" in info),
                ("activation", info.get("activation")),
            )
            if not ok
        ]
        if missing:
            move.reason = f"no file of the member or its population names its {', '.join(missing)}"
            continue
        try:
            spec = _spec(info, config)
        except (ConfigError, TypeError, ValueError) as err:
            move.reason = f"its unit is not one this version knows ({err})"
            continue
        identity = SweepIdentity(
            str(info["experiment"]),
            str(data.get("name") or info.get("dataset")),
            str(info["budget"]),
            str(data["fingerprint"]),
            config_key(config),
        )
        sweep = Sweep.at(_experiment_dir(runs, population, identity.experiment).parent, identity)
        target = sweep.member_dir(spec)
        if target.exists():
            move.reason = f"{target} exists already"
            continue
        move.target, move.sweep, move.config, move.data = target, sweep, config, data
        move.info = {
            **info,
            **spec.record(),
            "key": sweep.member_key(spec),
            "sweep": identity.key,
            "data": data,
        }
    return moves


def apply_move(move: Move, population: Path) -> None:
    assert move.target and move.sweep and move.info is not None
    move.target.parent.mkdir(parents=True, exist_ok=True)
    move.source.rename(move.target)
    (move.target / "member.json").write_text(json.dumps(move.info, indent=2) + "\n")
    provenance = population / "provenance.json"
    if provenance.is_file() and not (move.target / "provenance.json").exists():
        shutil.copy2(provenance, move.target / "provenance.json")
    move.sweep.write_record(mathematics(move.config or {}), move.data or {})


def _finish_population(population: Path, moves: list[Move], say: Callable[[str], None]) -> None:
    """Remove the emptied members/ folder; the rest of the population goes to its sweep."""
    members = population / "members"
    if members.is_dir() and not any(members.iterdir()):
        members.rmdir()
    sweeps = {m.sweep.root for m in moves if m.sweep}
    if members.exists() or len(sweeps) != 1:
        return
    target = next(iter(sweeps)) / POPULATIONS / population.name
    if target.exists():
        say(f"left {population}: {target} exists already")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    population.rename(target)
    say(f"moved {population} -> {target} (the population's provenance and checkpoint)")


def old_analysis_files(runs: Path) -> list[Path]:
    """Event files of earlier analyses: headline files, then the _hparams/_figures folders."""
    files = sorted(runs.rglob(f"{OLD_HEADLINE_FILE}.*"))
    for name in OLD_ANALYSIS_DIRS:
        for folder in sorted(runs.rglob(name)):
            if folder.is_dir():
                files += sorted(folder.rglob("*tfevents*"))
    return files


def _remove_files(files: list[Path]) -> None:
    folders = set()
    for path in files:
        path.unlink()
        folders.update(p for p in path.parents if p.name in OLD_ANALYSIS_DIRS)
    for top in folders:
        for sub in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()


def migrate(runs_dir: str | Path, dry_run: bool = False, say: Callable[[str], None] = print) -> int:
    """Move every old folder under `runs_dir` (see the module docstring); returns how many
    member folders were left where they are."""
    runs = Path(runs_dir)
    left = 0
    verb = "would move" if dry_run else "moved"
    for population, folders in old_members(runs).items():
        moves = plan_population(runs, population, folders)
        for move in moves:
            if move.target is None:
                left += 1
                say(f"left {move.source}: {move.reason}; move it out of {runs} or delete it")
                continue
            if not dry_run:
                apply_move(move, population)
            say(f"{verb} {move.source} -> {move.target}")
        if not dry_run:
            _finish_population(population, moves, say)
    files = old_analysis_files(runs)
    if files:
        if not dry_run:
            _remove_files(files)
        say(
            f"{'would remove' if dry_run else 'removed'} {len(files)} event file(s) of earlier "
            "analyses (analysis.tfevents.*, _hparams/, _figures/); the next analysis writes them"
        )
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", type=Path, help="the runs folder (or any folder in it)")
    parser.add_argument("--dry-run", action="store_true", help="say what would move; move nothing")
    args = parser.parse_args(argv)
    if not args.runs_dir.is_dir():
        print(f"{args.runs_dir} is not a folder", file=sys.stderr)
        return 2
    lines: list[str] = []
    left = migrate(args.runs_dir, args.dry_run, lines.append)
    print("\n".join(lines) if lines else f"{args.runs_dir}: nothing to migrate")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
