"""Reports for the CIFAR experiments: Fig. 4, Fig. 5, the comparisons and §6 tests; Table 1.

Units, Fig. 5's columns and the comparisons come from the units present; only the paper's own
§6 comparisons (set beside its numbers) are a fixed list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from elurepro.analysis.collect import FINISHED, MemberRun
from elurepro.analysis.context import PAPER_UNITS, Analysis, ReportWriter
from elurepro.analysis.figures import paired_differences, theory_diagnostics
from elurepro.analysis.format import Column, fmt
from elurepro.analysis.headline import (
    HEADLINES,
    UnitComparison,
    comparison_columns,
    headline_metric,
    headline_values,
    pair,
)
from elurepro.analysis.plotting import (
    config_style,
    new_figure,
    panel_title,
    plot_curve,
    step_curve,
    unit_name,
    zoom,
)
from elurepro.analysis.provenance import data_label, dataset_label, not_comparable_reason
from elurepro.analysis.reported import Reported, find_reported
from elurepro.analysis.stats import Describe, describe, min_p_note
from elurepro.analysis.table import RunTable
from elurepro.analysis.tables import comparisons

CIFAR100_11LAYER_CONFIGS = list(PAPER_UNITS) + [f"{u}+bn" for u in PAPER_UNITS]
START, END = 0.125, 0.8  # zoom windows as fractions of the run: [0, START] and [END, 1]

# docs/protocol.md §6: ELU against each other unit without BN, ELU against ReLU with BN, and
# every unit with BN against itself without. These are the rows set beside the paper's p < 0.001.
PAPER_PAIRS = [("elu", other) for other in ("srelu", "relu", "lrelu")]
PAPER_PAIRS.append(("elu", "relu+bn"))
PAPER_PAIRS += [(f"{unit}+bn", unit) for unit in PAPER_UNITS]

# Schedule D1 (docs/protocol.md §5.4, U14): phase ends at 115k, 165k and 205k of 205k iterations.
D1_PHASES = [
    ("before fine-tuning", 115 / 205),
    ("after fine-tuning", 165 / 205),
    ("after ×1.5 dropout", 1.0),
]


def _max_kstep(table: RunTable) -> float:
    steps = table.rows["step"]
    return (int(steps.max()) if len(steps) else 0) / 1000.0


def report_cifar100_11layer(a: Analysis, w: ReportWriter) -> None:
    xmax = _max_kstep(a.table())
    _fig4(a, w, xmax)
    _fig5(a, w, xmax)
    _cifar100_table(a, w)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)
    theory_diagnostics.write(a, w)
    _wilcoxon_section(a, w)


def _fig4(a: Analysis, w: ReportWriter, xmax: float) -> None:
    """Fig. 4: every configuration without BN, one curve each, over the full run, its start and
    its end."""
    configs = a.configs()
    context = a.context()
    windows = [("full run", None), ("start", (0.0, START * xmax)), ("end", (END * xmax, xmax))]
    plain = {c: ms for c, ms in configs.items() if not ms[0].batchnorm}
    fig, axes = new_figure(2, 3)
    for row, (metric, ylabel, what) in enumerate(
        [
            ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
            ("test/error", "test error (%)", "test error"),
        ]
    ):
        curves = {c: step_curve(a.table(), ms, metric) for c, ms in plain.items()}
        for col, (part, window) in enumerate(windows):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **config_style(plain[config]))
            if window:
                zoom(ax, list(curves.values()), *window)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            panel_title(ax, "abcdef"[3 * row + col], f"{what}, {part}")
    if plain:
        axes[0, 0].legend()
    fig.suptitle(f"Fig. 4, 11-layer CNN without BN (mean ± std over seeds) — {context}")
    w.section("Fig. 4: learning curves without batch normalization")
    w.figure(fig, "fig4_learning_curves", a.caption("Fig. 4"))


def _fig5(a: Analysis, w: ReportWriter, xmax: float) -> None:
    """Fig. 5: one column per non-baseline unit present, each with and without BN, beside the
    baseline with and without BN."""
    configs = a.configs()
    base = a.baseline
    others = [u for u in a.units() if u != base] or [base]
    fig, axes = new_figure(2, len(others))
    for col, other in enumerate(others):
        wanted = [base, f"{base}+bn", other, f"{other}+bn"]
        chosen = [c for c in dict.fromkeys(wanted) if c in configs]
        curves = {c: step_curve(a.table(), configs[c], "test/error") for c in chosen}
        for row in range(2):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **config_style(configs[config]))
            if row == 1:
                zoom(ax, list(curves.values()), END * xmax, xmax)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel("test error (%)")
            part = "end" if row else "full run"
            title = f"{unit_name(base)} vs {unit_name(other)}" if other != base else base
            panel_title(ax, "abcdefghijklmnopqrstuvwxyz"[(row * len(others) + col) % 26], title)
            ax.set_title(f"{part}", loc="right", fontsize=7)
        if curves:
            axes[0, col].legend()
    fig.suptitle(f"Fig. 5, with and without BN (dashed: BN) — {a.context()}")
    w.section("Fig. 5: with and without batch normalization")
    w.figure(fig, "fig5_batchnorm", a.caption("Fig. 5"))


@dataclass
class FinalRow:
    """One configuration's final values beside the paper's number."""

    config: str
    error: Describe
    loss: Describe
    paper: Reported | None
    paper_std: Reported | None
    difference: float | None
    reason: str | None

    @property
    def paper_text(self) -> str:
        if self.paper is None:
            return "—"
        text = f"{self.paper.value:.2f}"
        return text + (f" ± {self.paper_std.value:.2f}" if self.paper_std else "")

    @property
    def difference_text(self) -> str:
        if self.paper is None:
            return "— (no paper number)"
        if self.reason is not None:
            return "not comparable"
        return fmt(self.difference) if self.difference is not None else "—"


FINAL_COLUMNS: list[Column[FinalRow]] = [
    Column("configuration", "configuration", lambda r: r.config),
    Column("n", "n", lambda r: r.error.n),
    Column("test error (%)", "test_error_mean", lambda r: r.error.mean, lambda r: r.error.text(2)),
    Column("", "test_error_std", lambda r: r.error.std, markdown=False),
    Column("training loss", "train_loss_mean", lambda r: r.loss.mean, lambda r: r.loss.text(4)),
    Column("", "train_loss_std", lambda r: r.loss.std, markdown=False),
    Column(
        "paper test error (%)",
        "paper_test_error",
        lambda r: r.paper.value if r.paper else None,
        lambda r: r.paper_text,
    ),
    Column(
        "",
        "paper_test_error_std",
        lambda r: r.paper_std.value if r.paper_std else None,
        markdown=False,
    ),
    Column("ours − paper (pp)", "difference", lambda r: r.difference, lambda r: r.difference_text),
    Column("", "not_comparable_because", lambda r: r.reason or "", markdown=False),
]


def _cifar100_table(a: Analysis, w: ReportWriter) -> None:
    reason = not_comparable_reason(a.members, "cifar100")
    error_h, loss_h = HEADLINES[a.experiment]
    rows = []
    for config in a.configs():
        # Means and std as logged; only the paired differences are taken in integer counts.
        metric = headline_metric(a, error_h) or "test/error"
        err = describe(list(headline_values(a, config, error_h, metric).values()))
        loss = describe(list(a.finals(config, loss_h.metrics[0]).values()))
        paper = find_reported(a.reported, a.experiment, "test_error", config)
        paper_std = find_reported(a.reported, a.experiment, "test_error_std", config)
        diff = err.mean - paper.value if paper and reason is None and err.n else None
        rows.append(FinalRow(config, err, loss, paper, paper_std, diff, reason))
    w.section("Final test error (finished members, mean ± std)")
    w.records(rows, FINAL_COLUMNS, csv_name="final_values.csv")
    if reason is not None:
        w.text(
            f"**Not comparable with the paper's numbers:** {reason}. "
            "The paper's column is shown for reference only; no differences are computed."
        )
    else:
        w.text("The paper's numbers are CIFAR-100, no BN, 10 runs (docs/protocol.md §5.3).")


def cifar100_comparisons(a: Analysis) -> list[UnitComparison]:
    """Every paired comparison of docs/protocol.md §6, on final test error and training loss."""
    out = []
    for h in HEADLINES[a.experiment]:
        metric = headline_metric(a, h) or h.metrics[0]
        for first, second in PAPER_PAIRS:
            out.append(pair(a, first, second, h, metric, "paper §6"))
    return out


def _wilcoxon_section(a: Analysis, w: ReportWriter) -> None:
    comparisons = cifar100_comparisons(a)

    def paper(r: UnitComparison) -> float | None:
        row = find_reported(a.reported, a.experiment, "wilcoxon_p", r.result.label)
        return row.value if row else None

    columns = comparison_columns(paper=True)
    at = next(i for i, c in enumerate(columns) if c.csv == "note")
    columns.insert(
        at,
        Column(
            "paper",
            "paper_p_upper_bound",
            paper,
            lambda r: f"p < {paper(r):g}" if paper(r) is not None else "—",
        ),
    )
    w.section("The paper's Wilcoxon signed-rank tests (docs/protocol.md §6)")
    w.text(
        "The paper's own comparisons, in its direction (A = ELU, or a unit with BN): "
        "one-sided `scipy.stats.wilcoxon(A, B, alternative='less')`, i.e. A's final value is "
        "lower (better) than B's; two-sided alongside. 'A better' counts the pairs where A's "
        "value is lower. Finished members only; methods as in the section above."
    )
    w.records(comparisons, columns, csv_name="wilcoxon.csv")
    reason = not_comparable_reason(a.members, "cifar100")
    if reason:
        w.text(f"The paper's p-values are for CIFAR-100 at its budget; here: {reason}.")
    ns = sorted({c.result.n_nonzero for c in comparisons if c.result.n_nonzero > 0})
    w.text(*(min_p_note(n) for n in ns) if ns else (min_p_note(0),))


# The readings of "0.01, divided by 10 after 35k" (docs/protocol.md U14; configs/schedule/).
SCHEDULES = {
    "D1": "one drop to 0.001 at 35k; fine-tuning phases from 115k and 165k; 205k iterations",
    "D2": "one drop to 0.001 at 35k, fine-tuning from there; x1.5 dropout from 85k; 125k",
    "D3": "÷10 every 35k; fine-tuning phases from 115k and 165k; 205k iterations",
}


def schedule_line(members: Sequence[MemberRun]) -> str:
    """Which reading of Table 1's schedule the members were trained under."""
    names = sorted(
        {
            ((m.provenance or {}).get("config") or {}).get("optim", {}).get("schedule") or "D1"
            for m in members
        }
    )
    described = "; ".join(
        f"**{n}** ({SCHEDULES.get(n, 'not a reading of the paper')})" for n in names
    )
    return (
        f"Schedule: {described} (docs/protocol.md U14; runs from before the schedule was named "
        "are D1)."
    )


def phase_ends(table: RunTable, member: MemberRun) -> list[tuple[str, int]]:
    """(phase name, last step of the phase) for the 18-layer schedule.

    If the records carry a `phase` field, its last step per phase is used; otherwise the D1
    schedule's phase ends are placed at the same fractions of the member's total steps.
    """
    phases: dict[str, int] = {}
    steps, values = table.series(member, "phase", "step")
    for step, value in zip(steps.tolist(), values.tolist(), strict=True):
        # The trainer logs the phase as an int; the table holds every value as a float.
        name = str(int(value)) if value.is_integer() else str(value)
        phases[name] = max(phases.get(name, 0), int(step))
    if phases:
        return sorted(phases.items(), key=lambda kv: kv[1])
    total = (member.summary or {}).get("steps")
    if total is None:
        total = table.last_step(member) or 0
    return [(name, round(int(total) * frac)) for name, frac in D1_PHASES]


def _error_at(table: RunTable, member: MemberRun, start: int, end: int) -> tuple[float, int] | None:
    """The last test/error logged in (start, end]: (value, step)."""
    x, y = table.series(member, "test/error", "step")
    inside = (x > start) & (x <= end)
    if not inside.any():
        return None
    return float(y[inside][-1]), int(x[inside][-1])


def _network_name(config: str) -> str:
    """'ELU-Network (ours)' for the paper's network; '<UNIT>[+BN]-Network (ours)' for others."""
    unit, bn = config.removesuffix("+bn"), config.endswith("+bn")
    return f"{unit_name(unit)}{'+BN' if bn else ''}-Network (ours)"


def report_cifar_18layer(a: Analysis, w: ReportWriter) -> None:
    datasets = [d for d in ("cifar10", "cifar100") if any(m.dataset == d for m in a.members)]
    datasets += sorted({m.dataset for m in a.members} - set(datasets))
    groups = list(dict.fromkeys(ms[0].group for ms in a.configs().values()))
    _table1(a, w, datasets, groups)
    _phase_table(a, w)
    _curves_18layer(a, w, datasets, groups)
    rows = comparisons.write(a, w)
    paired_differences.write(a, w, rows)


def _table1(a: Analysis, w: ReportWriter, datasets: list[str], groups: list[str]) -> None:
    """Table 1: the paper's networks' test errors beside ours, one row per configuration."""
    reasons = {
        d: not_comparable_reason([m for m in a.members if m.dataset == d], d) for d in datasets
    }
    # Our rows: one per configuration (unit, BN) present, the paper's ELU network first.
    ours: dict[tuple[str, str], Describe] = {}
    for group in groups:
        for d in datasets:
            members = [
                m for m in a.members if m.dataset == d and m.group == group and m.status == FINISHED
            ]
            values = [a.table().final(m, "test/error") for m in members]
            ours[(group, d)] = describe([v for v in values if v is not None])

    columns = ["cifar10", "cifar100"]
    networks: list[str] = []
    for row in a.reported:
        if row.experiment == a.experiment and row.configuration not in networks:
            networks.append(row.configuration)
    rows, csv_rows = [], []
    for network in networks:
        cells, notes = [], {}
        for d in columns:
            r = find_reported(a.reported, a.experiment, f"test_error_{d}", network)
            cells.append(f"{r.value:.2f}" if r else "—")
            if r and r.note:
                notes[dataset_label(d, True)] = r.note
            csv_rows.append(
                [network, d, "paper", r.value if r else None, None, None, r.note if r else ""]
            )
        if len(set(notes.values())) == 1:
            note = next(iter(notes.values()))
        else:
            note = "; ".join(f"{d}: {text}" for d, text in notes.items())
        rows.append([network] + cells + [note])
    paper_elu = {
        d: find_reported(a.reported, a.experiment, f"test_error_{d}", "ELU-Network")
        for d in columns
    }
    for group in groups:
        name = _network_name(group)
        cells = []
        for d in columns:
            stats = ours.get((group, d))
            cells.append(stats.text(2) if stats and stats.n else "not run")
            if stats is None:
                continue
            paper = paper_elu[d] if group == "elu" else None
            diff = None
            if stats.n and paper is not None and not reasons[d]:
                diff = stats.mean - paper.value
            csv_rows.append([name, d, "ours", stats.mean, stats.std, diff, reasons.get(d) or ""])
        rows.append([f"**{name}**"] + cells + [a.context()])
    diff_cells = []
    for d in columns:
        stats, paper = ours.get(("elu", d)), paper_elu[d]
        if stats is None or not stats.n or paper is None:
            diff_cells.append("—")
        elif reasons.get(d):
            diff_cells.append("not comparable")
        else:
            diff_cells.append(f"{stats.mean - paper.value:+.2f}")
    rows.append(
        ["ours − paper ELU-Network (pp)"]
        + diff_cells
        + [
            "; ".join(f"{dataset_label(d, None)}: {reasons[d]}" for d in columns if reasons.get(d))
            or "comparable"
        ]
    )
    w.section("Table 1: test error (%)")
    w.text(schedule_line(a.members))
    w.table(["network", "CIFAR-10", "CIFAR-100", "note"], rows)
    w.csv(
        "table1.csv",
        ["network", "dataset", "source", "test_error", "std", "difference", "note"],
        csv_rows,
    )
    for d in columns:
        if reasons.get(d):
            w.text(f"**{dataset_label(d, None)}: not comparable with the paper:** {reasons[d]}.")
    w.text(
        "Paper values marked [VERIFY] come from recollection (docs/protocol.md §9). "
        "(CSV: `table1.csv`)"
    )


def _phase_table(a: Analysis, w: ReportWriter) -> None:
    """The test error at the end of each training phase, per member."""
    rows = []
    for m in sorted(a.members, key=lambda m: (m.dataset, m.seed)):
        start = 0
        for name, end in phase_ends(a.table(), m):
            hit = _error_at(a.table(), m, start, end)
            rows.append(
                [
                    data_label([m]),
                    m.id,
                    m.status,
                    name,
                    end,
                    "—" if hit is None else f"{hit[0]:.2f}",
                    "—" if hit is None else hit[1],
                ]
            )
            start = end
    w.section("Test error at the end of each training phase")
    w.text(
        "Phase ends come from a `phase` field in metrics.jsonl when the trainer logs one, "
        "otherwise from schedule D1 (115k / 165k / 205k of 205k iterations, scaled to the "
        "run's length). The value is the last `test/error` logged in the phase."
    )
    headers = [
        "data set",
        "member",
        "status",
        "phase",
        "phase end (step)",
        "test error (%)",
        "logged at step",
    ]
    w.table(headers, rows, csv_name="phases.csv")


def _curves_18layer(a: Analysis, w: ReportWriter, datasets: list[str], groups: list[str]) -> None:
    """Training loss and test error per data set, with the phase ends dotted."""
    fig, axes = new_figure(2, len(datasets))
    for col, d in enumerate(datasets):
        members = [m for m in a.members if m.dataset == d]
        for row, (metric, ylabel, what) in enumerate(
            [
                ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
                ("test/error", "test error (%)", "test error"),
            ]
        ):
            ax = axes[row, col]
            for group in groups:
                chosen = [m for m in members if m.group == group]
                if chosen:
                    curve = step_curve(a.table(), chosen, metric)
                    plot_curve(ax, curve, label=f"{group} (n={curve.n})", **config_style(chosen))
            for m in members[:1]:
                for _, end in phase_ends(a.table(), m)[:-1]:
                    ax.axvline(end / 1000.0, color="gray", lw=0.7, ls=":")
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            label = data_label(members)
            panel_title(ax, "abcdefgh"[row * len(datasets) + col], f"{label}: {what}")
            ax.legend()
    fig.suptitle(f"18-layer network (dotted: phase ends) — {a.context()}")
    w.section("Learning curves")
    w.figure(fig, "cifar_18layer_curves", a.caption("Table 1 network: learning curves"))
