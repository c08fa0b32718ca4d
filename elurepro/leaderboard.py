"""Command line: `python -m elurepro.leaderboard [runs_folder] [--out DIR] [--baseline elu]`.

One table (Markdown + CSV) of units × experiments on each experiment's headline metrics, with
the paired test of every unit against the baseline, and one figure of the paired differences,
into `<runs_folder>/leaderboard` unless `--out` says otherwise (`make leaderboard
OUT=results/leaderboard` refreshes the repository's own copy).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from elurepro.errors import ElureproError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m elurepro.leaderboard",
        description="Every unit on every experiment's headline metrics, against a baseline.",
    )
    parser.add_argument(
        "runs_folder",
        nargs="?",
        help="folder holding the experiments' run folders (default: $ELUREPRO_RUNS or runs)",
    )
    parser.add_argument("--out", help="output folder (default: <runs_folder>/leaderboard)")
    parser.add_argument(
        "--baseline",
        default="elu",
        help="unit every other unit is compared with, paired by seed (default: %(default)s)",
    )
    parser.add_argument(
        "--reported", help="CSV of the paper's numbers (default: the repo's results/reported.csv)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported here so that `--help` answers without loading matplotlib, scipy and torch.
    from elurepro.analysis.leaderboard import write_leaderboard

    runs = Path(args.runs_folder or os.environ.get("ELUREPRO_RUNS") or "runs")
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        out = Path(args.out) if args.out else runs / "leaderboard"
        result = write_leaderboard(runs, out, args.baseline, args.reported)
    except ElureproError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    board = result.board
    ran = [line for line in board.lines if line.run]
    print(
        f"leaderboard: {result.markdown} ({len(board.rows)} unit configuration(s), "
        f"{len(ran)} line(s) with runs, baseline {board.baseline})"
    )
    print(f"table: {result.csv}")
    print("figure: " + ", ".join(str(p) for p in result.figures))
    not_run = sorted({line.experiment for line in board.lines if not line.run})
    if not_run:
        print(f"not run: {', '.join(not_run)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
