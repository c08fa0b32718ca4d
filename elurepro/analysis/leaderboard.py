"""The leaderboard: every unit × every experiment, on each experiment's headline metrics.

Each line of the table is one experiment's headline metric in one sweep (one budget, one data
fingerprint, one configuration) and one setting (learning rate, data set); its cells are the
units (with and without BN) run there: mean ± std over seeds and the paired Wilcoxon test
against the baseline unit in the same setting. A unit run at two budgets appears on two lines;
an experiment without runs has a line that says "not run".
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from elurepro.analysis.collect import DIVERGED, FINISHED, UNFINISHED, MemberRun
from elurepro.analysis.context import PAPER_UNITS, Analysis, baseline_label
from elurepro.analysis.figures.paired_differences import Difference, difference_panel
from elurepro.analysis.format import fmt_p, markdown_table, write_csv
from elurepro.analysis.headline import (
    Headline,
    headline_metric,
    headline_values,
    headlines_for,
    label_of,
    pair,
)
from elurepro.analysis.plotting import new_figure, paper_style, save_figure
from elurepro.analysis.provenance import data_label, reduced_precision
from elurepro.analysis.report import EXPERIMENTS, experiment_spec
from elurepro.analysis.reported import Reported, default_reported_csv, load_reported
from elurepro.analysis.stats import Comparison, Describe, describe
from elurepro.analysis.sweeps import Sweep, partition, select_members
from elurepro.analysis.table import read_runs
from elurepro.errors import ElureproError

NOT_RUN = "not run"


@dataclass
class Cell:
    """One unit (with or without BN) on one line: its values and its test against the baseline."""

    row: str  # "gelu", "gelu+bn"
    unit: str
    batchnorm: bool
    config: str
    stats: Describe
    comparison: Comparison | None = None  # None for the baseline itself or without a baseline
    unfinished: int = 0
    diverged: int = 0
    grid: str = ""


@dataclass
class Line:
    """One experiment's headline metric in one sweep and setting, with a cell per unit."""

    experiment: str
    metric_label: str
    metric: str
    sweep: str  # the sweep's folder name (data, budget, fingerprint, configuration)
    budget: str
    data: str
    not_comparable: str | None
    setting: str
    baseline: str
    cells: dict[str, Cell] = field(default_factory=dict)
    run: bool = True

    @property
    def title(self) -> str:
        setting = f", {self.setting}" if self.setting else ""
        return f"{self.experiment}: {self.metric_label}{setting}"


@dataclass
class Leaderboard:
    lines: list[Line]
    rows: list[str]  # unit configurations, in table order
    baseline: str
    members: int = 0  # member folders read


def _row_order(row: str, baseline: str) -> tuple:
    unit = row.removesuffix("+bn")
    rank = 0 if unit == baseline else 1 + (PAPER_UNITS.index(unit) if unit in PAPER_UNITS else 9)
    return (row.endswith("+bn"), rank, unit)


def _setting_label(a: Analysis, dataset: str, lr: float | None) -> str:
    parts = []
    if lr is not None and len({i.lr for i in a.infos()}) > 1:
        parts.append(f"lr {lr:g}")
    if a.multi_dataset:
        parts.append(dataset)
    return ", ".join(parts)


def _lines_for(a: Analysis, sweep: Sweep, h: Headline, members: Sequence[MemberRun]) -> list[Line]:
    metric = headline_metric(a, h)
    if metric is None:
        return []
    out = []
    settings = list(dict.fromkeys((i.dataset, i.lr) for i in a.infos()))
    for dataset, lr in settings:
        chosen = [m for m in members if m.dataset == dataset and m.lr == lr]
        line = Line(
            experiment=a.experiment,
            metric_label=label_of(a, h),
            metric=metric,
            sweep=sweep.name,
            # The arithmetic is part of what a line is: fp32 and bf16 runs are never one line.
            budget="/".join(sorted({m.budget or "unknown" for m in chosen}))
            + "".join(f", {p}" for p in reduced_precision(chosen)),
            data=data_label(chosen),
            not_comparable=a.not_comparable,
            setting=_setting_label(a, dataset, lr),
            baseline=a.baseline,
        )
        for info in a.infos():
            if (info.dataset, info.lr) != (dataset, lr):
                continue
            config_members = a.configs()[info.name]
            values = headline_values(a, info.name, h, metric)
            comparison, grid = None, ""
            if info.unit != a.baseline:
                base = a.find_config(a.baseline, info.setting)
                if base is not None:
                    result = pair(a, info.name, base, h, metric, "vs baseline")
                    comparison, grid = result.result, result.grid
                else:
                    comparison = Comparison(
                        label=f"{info.name} vs {a.baseline}",
                        metric=metric,
                        group_a=info.name,
                        group_b=a.baseline,
                        n=0,
                        a_wins=0,
                        ties=0,
                        p_less=math.nan,
                        p_two_sided=math.nan,
                        min_p_less=math.nan,
                        min_p_two_sided=math.nan,
                        method="not computable (no pairs)",
                        note=f"no {a.baseline} members in this setting",
                    )
            row = info.unit + ("+bn" if info.batchnorm else "")
            line.cells[row] = Cell(
                row=row,
                unit=info.unit,
                batchnorm=info.batchnorm,
                config=info.name,
                stats=describe(list(values.values())),
                comparison=comparison,
                unfinished=sum(m.status == UNFINISHED for m in config_members),
                diverged=sum(m.status == DIVERGED for m in config_members),
                grid=grid,
            )
        out.append(line)
    return out


def build_leaderboard(
    runs_dir: str | Path, baseline: str = "elu", reported: list[Reported] | None = None
) -> Leaderboard:
    """Collect every run under `runs_dir` and compute every line and cell."""
    runs_dir = Path(runs_dir)
    base = baseline_label(baseline)
    if reported is None:
        reported = load_reported(default_reported_csv())
    table = read_runs(runs_dir)
    members = table.members
    lines: list[Line] = []
    added = sorted({m.experiment for m in members} - set(EXPERIMENTS))
    for experiment in [*EXPERIMENTS, *added]:
        spec = experiment_spec(experiment)
        headlines = [h for h in headlines_for(experiment) if h.leaderboard]
        mine = [m for m in members if m.experiment == experiment]
        found = []
        for sweep in partition(mine, multi_dataset=not spec.single_dataset):
            chosen, _ = select_members(sweep.members)
            a = Analysis(
                experiment,
                chosen,
                reported,
                baseline=base,
                paper_datasets=spec.paper_datasets,
                in_paper=spec.in_paper,
                runs=table,
            )
            for h in headlines:
                found += _lines_for(a, sweep, h, chosen)
        if not found:
            finished = any(m.status == FINISHED for m in mine)
            lines.append(
                Line(
                    experiment=experiment,
                    metric_label=", ".join(h.label for h in headlines),
                    metric="",
                    sweep="—",
                    budget="—",
                    data="—",
                    not_comparable=None,
                    setting="" if not mine or finished else f"{len(mine)} unfinished member(s)",
                    baseline=base,
                    run=False,
                )
            )
        lines += found
    rows = sorted({r for line in lines for r in line.cells}, key=lambda r: _row_order(r, base))
    return Leaderboard(lines, rows, base, len(members))


def cell_text(cell: Cell | None, line: Line) -> str:
    """A Markdown cell: mean ± std (n), then Δ, k of n, ties, p one/two-sided and V."""
    if not line.run:
        return NOT_RUN
    if cell is None:
        return NOT_RUN
    if cell.stats.n == 0:
        what = []
        if cell.unfinished:
            what.append(f"{cell.unfinished} unfinished")
        if cell.diverged:
            what.append(f"{cell.diverged} diverged")
        return "no finished run" + (f" ({', '.join(what)})" if what else "")
    digits = 2 if "%" in line.metric_label else 4
    text = cell.stats.text(digits)
    c = cell.comparison
    if c is None:
        return f"{text}<br>baseline"
    if c.n == 0:
        return f"{text}<br>{c.note or 'no pairs'}"
    return (
        f"{text}<br>Δ {c.mean_difference:+.{digits}f}; better {c.a_wins}/{c.n}, ties {c.ties}"
        f"<br>p₁ {fmt_p(c.p_less)}, p₂ {fmt_p(c.p_two_sided)}, V {c.v:g}"
    )


CSV_HEADERS = [
    "experiment",
    "metric",
    "metric_key",
    "sweep",
    "budget",
    "data",
    "comparable_with_paper",
    "not_comparable_because",
    "setting",
    "unit",
    "batchnorm",
    "configuration",
    "n",
    "mean",
    "std",
    "unfinished",
    "diverged",
    "baseline",
    "pairs",
    "unit_better",
    "ties",
    "baseline_better",
    "mean_difference",
    "v",
    "w",
    "p_one_sided_less",
    "p_two_sided",
    "method",
    "nonzero_pairs",
    "smallest_p_one_sided",
    "smallest_p_two_sided",
    "values",
    "note",
]


def _padded(row: list, note: str) -> list:
    """`row`, empty cells up to the note column, and the note."""
    return row + [None] * (len(CSV_HEADERS) - len(row) - 1) + [note]


def csv_rows(board: Leaderboard) -> list[list]:
    """One row per (line, unit), 'not run' rows included, so the CSV is the full grid."""
    rows = []
    for line in board.lines:
        for row in board.rows or [""]:
            cell = line.cells.get(row)
            head = [
                line.experiment,
                line.metric_label,
                line.metric,
                line.sweep,
                line.budget,
                line.data,
                "" if not line.run else line.not_comparable is None,
                line.not_comparable or "",
                line.setting,
                row.removesuffix("+bn"),
                row.endswith("+bn"),
                cell.config if cell else "",
            ]
            if cell is None:
                rows.append(_padded(head + [0], NOT_RUN))
                continue
            c = cell.comparison
            stats = [cell.stats.n, cell.stats.mean, cell.stats.std, cell.unfinished, cell.diverged]
            if c is None:
                rows.append(_padded(head + stats + [line.baseline], "baseline"))
                continue
            rows.append(
                head
                + stats
                + [
                    line.baseline,
                    c.n,
                    c.a_wins,
                    c.ties,
                    c.b_wins,
                    c.mean_difference,
                    c.v,
                    c.w,
                    c.p_less,
                    c.p_two_sided,
                    c.method,
                    c.n_nonzero,
                    c.min_p_less,
                    c.min_p_two_sided,
                    cell.grid,
                    c.note,
                ]
            )
    return rows


def runs_read(board: Leaderboard, runs_dir: Path) -> str:
    """What the board was made from, with the runs folder relative to the repository (a path
    of the machine it was made on would mean nothing to a reader of the committed file)."""
    repo = Path(__file__).resolve().parents[2]
    folder = Path(os.path.relpath(Path(runs_dir).resolve(), repo)).as_posix()
    sweeps = len({(line.experiment, line.sweep) for line in board.lines if line.run})
    return (
        f"{board.members} member folder(s) in {sweeps} sweep(s) under `{folder}` (relative to "
        "the repository)"
    )


def markdown(board: Leaderboard, runs_dir: Path) -> str:
    headers = ["experiment: metric", "data", "budget", "sweep"] + board.rows
    rows = []
    for line in board.lines:
        budget = line.budget
        if line.run and line.not_comparable:
            budget += " (NOT comparable with the paper)"
        rows.append(
            [line.title, line.data, budget, line.sweep]
            + [cell_text(line.cells.get(r), line) for r in board.rows]
        )
    not_run = [line.experiment for line in board.lines if not line.run]
    parts = [
        "# Leaderboard: every unit on every experiment",
        "",
        f"Runs read: {runs_read(board, runs_dir)}. Each line is one experiment's headline "
        "metric in one sweep "
        "(one budget, one data fingerprint, one configuration; `sweep` names it) and one "
        "setting; lines of different budgets or data never merge, so a unit run at two "
        "budgets appears on two lines. A cell is the mean ± std over finished seeds (lower "
        f"is better), then the paired test against the baseline **{board.baseline}** in the "
        "same sweep and setting: Δ = mean paired difference (unit − baseline), 'better k/n' "
        "the pairs where the unit is lower, ties the equal pairs (error rates compared as "
        "integer counts of images), p₁ the one-sided Wilcoxon signed-rank p (unit lower), p₂ "
        "the two-sided p, V the sum of the ranks of the positive differences "
        "(`scipy.stats.wilcoxon`; the method, W and the smallest reachable p are in the CSV).",
        "",
        "Only lines at budget=paper on the official data are comparable with the paper's "
        "numbers; every other line says NOT comparable beside its budget.",
        "",
        markdown_table(headers, rows),
        "",
    ]
    if not_run:
        parts += [f"Not run: {', '.join(not_run)}.", ""]
    parts += [
        "![Paired differences from the baseline](leaderboard.png)",
        "",
        "*Each panel: one line of the table; per unit, every seed's difference from the "
        "baseline (dots), their mean ± std (whisker; hollow: with BN), and p₁ / p₂ / n.* "
        "(PDF: `leaderboard.pdf`, CSV: `leaderboard.csv`)",
        "",
    ]
    return "\n".join(parts)


def figure(board: Leaderboard) -> Figure:
    """Per line with comparisons, a dot-and-whisker panel of each unit's differences."""
    panels = [
        line
        for line in board.lines
        if any(c.comparison is not None and c.comparison.n for c in line.cells.values())
    ]
    ncols = min(3, max(1, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    width = max([3.4] + [0.6 * len(line.cells) + 1.5 for line in panels])
    fig, axes = new_figure(nrows, ncols, panel=(width, 3.0))
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no paired comparisons in these runs", ha="center")
        axes[0, 0].set_axis_off()
    for k, line in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        items = [
            Difference(
                label=cell.row,
                unit=cell.unit,
                differences=cell.comparison.differences,
                p_less=cell.comparison.p_less,
                p_two_sided=cell.comparison.p_two_sided,
                batchnorm=cell.batchnorm,
            )
            for row in board.rows
            if (cell := line.cells.get(row)) is not None and cell.comparison is not None
        ]
        difference_panel(ax, items, f"− {board.baseline}")
        flag = "" if line.not_comparable is None else ", NOT comparable"
        title = textwrap.fill(f"{line.title}; {line.data}, budget={line.budget}{flag}", 70)
        ax.set_title(title, loc="left", fontsize=7)
    for k in range(len(panels), nrows * ncols):
        if panels:
            axes[k // ncols, k % ncols].set_visible(False)
    fig.suptitle(
        f"Every unit minus the baseline {board.baseline}, paired by seed (below 0: lower, better)"
    )
    return fig


@dataclass
class LeaderboardResult:
    markdown: Path
    csv: Path
    figures: list[Path]
    board: Leaderboard


def write_leaderboard(
    runs_dir: str | Path,
    out_dir: str | Path,
    baseline: str = "elu",
    reported_csv: str | Path | None = None,
) -> LeaderboardResult:
    """Build the leaderboard from `runs_dir` and write leaderboard.md/.csv/.png/.pdf."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    if not runs_dir.is_dir():
        raise ElureproError(
            f"runs folder {runs_dir} does not exist or is not a folder; train something first "
            "or pass the folder that holds the experiments' run folders"
        )
    reported = load_reported(reported_csv or default_reported_csv())
    board = build_leaderboard(runs_dir, baseline, reported)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "leaderboard.md"
    md.write_text(markdown(board, runs_dir))
    csv = write_csv(out_dir / "leaderboard.csv", CSV_HEADERS, csv_rows(board))
    with paper_style():
        figures = save_figure(figure(board), out_dir, "leaderboard")
    return LeaderboardResult(md, csv, figures, board)
