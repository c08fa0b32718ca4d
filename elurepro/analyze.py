"""Command line: `python -m elurepro.analyze <experiment> [runs_folder] [--out DIR]`.

One report per sweep (budget, data fingerprint, configuration) found under the runs folder:
into DIR when there is one, into DIR/<sweep name>/ when there are several (with DIR/index.md).
DIR is `<runs_folder>/report` unless given: the repository's `results/` is written only by the
paper-figure make targets, which pass `--out results/...`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from elurepro.errors import ElureproError


def _parser(experiments: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m elurepro.analyze",
        description="Tables, figures and statistics for one experiment's trained runs.",
    )
    parser.add_argument(
        "experiment",
        help=f"experiment id ({', '.join(experiments)}; one you added gets a generic report)",
    )
    parser.add_argument(
        "runs_folder",
        nargs="?",
        help="folder holding the run folders, at any level (default: runs/<experiment>); "
        "each sweep in it (budget, data, configuration) is reported separately",
    )
    parser.add_argument("--out", help="output folder (default: <runs_folder>/report)")
    parser.add_argument(
        "--reported", help="CSV of the paper's numbers (default: the repo's results/reported.csv)"
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="analyse unfinished members as they stand, all cut at the last step every one of "
        "them reached; the report says so (for a sweep still running or cut short)",
    )
    parser.add_argument(
        "--baseline",
        default="elu",
        help="unit every other unit is compared with, paired by seed (default: elu; a name as "
        "in members.activations, or a label such as lrelu_alpha0.3)",
    )
    parser.add_argument(
        "--no-tensorboard",
        action="store_true",
        help="do not write HParams records and figures under the runs folder",
    )
    return parser


def report_folder(runs: Path) -> Path:
    """Where a report goes without `--out`: beside the runs it reads, never into results/."""
    return runs / "report"


def main(argv: Sequence[str] | None = None) -> int:
    # Imported here so that `--help` answers without loading matplotlib and scipy.
    from elurepro.analysis.report import EXPERIMENTS, analyze_all

    args = _parser(list(EXPERIMENTS)).parse_args(argv)
    runs = Path(args.runs_folder or Path("runs") / args.experiment)
    out = Path(args.out) if args.out else report_folder(runs)
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        results = analyze_all(
            args.experiment,
            runs,
            out,
            args.reported,
            tensorboard=not args.no_tensorboard,
            partial=args.partial,
            baseline=args.baseline,
        )
    except ElureproError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if len(results) > 1:
        print(f"{len(results)} sweeps, one report each (index: {out / 'index.md'}):")
        for result in results:
            label = "" if result.not_comparable is None else "; NOT comparable with the paper"
            print(f"report: {result.report} ({result.sweep}{label})")
            if result.tensorboard:
                print(result.tensorboard)
        for result in results:
            for line in result.attention:
                print(f"note: [{result.report.parent.name}] {line}")
        return 0
    (result,) = results
    print(f"report: {result.report} ({result.sweep})")
    print("tables: " + ", ".join(str(p) for p in result.tables))
    print("figures: " + ", ".join(str(p) for p in result.figures))
    for line in result.attention:
        print(f"note: {line}")
    if result.tensorboard:
        print(result.tensorboard)
    return 0


if __name__ == "__main__":
    sys.exit(main())
