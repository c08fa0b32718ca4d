"""Reports for the CIFAR experiments: Fig. 4, Fig. 5 and the §6 tests; Table 1."""

from __future__ import annotations

from collections.abc import Sequence

from elurepro.analysis.collect import FINISHED, Member
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import (
    Curve,
    color_for,
    mean_curve,
    new_figure,
    panel_title,
    plot_curve,
    unit_name,
    zoom,
)
from elurepro.analysis.stats import Comparison, compare, describe, min_p_note
from elurepro.analysis.tables import (
    data_label,
    dataset_label,
    find_reported,
    fmt,
    fmt_p,
    not_comparable_reason,
)

UNITS = ["elu", "srelu", "lrelu", "relu"]
CIFAR100_11LAYER_CONFIGS = UNITS + [f"{u}+bn" for u in UNITS]
START, END = 0.125, 0.8  # zoom windows as fractions of the run: [0, START] and [END, 1]

# Schedule D1 (PAPER.md §5.4, U14): phase ends at 115k, 165k and 205k of 205k iterations.
D1_PHASES = [
    ("before fine-tuning", 115 / 205),
    ("after fine-tuning", 165 / 205),
    ("after ×1.5 dropout", 1.0),
]


def _kcurve(members: Sequence[Member], metric: str) -> Curve:
    """Mean ± std over finished members against iterations in thousands."""
    c = mean_curve([m.series(metric, "step") for m in members if m.status == FINISHED])
    return Curve(c.x / 1000.0, c.mean, c.std, c.n)


def _style(members: Sequence[Member]) -> dict:
    m = members[0]
    return {"color": color_for(m.activation), "linestyle": "--" if m.batchnorm else "-"}


def _max_kstep(members: Sequence[Member]) -> float:
    steps = [r["step"] for m in members for r in m.records if r.get("step") is not None]
    return max(steps, default=0) / 1000.0


def report_cifar100_11layer(a: Analysis, w: ReportWriter) -> None:
    configs = a.configs()
    context = a.context()
    xmax = _max_kstep(a.members)
    windows = [("full run", None), ("start", (0.0, START * xmax)), ("end", (END * xmax, xmax))]

    # Fig. 4: no-BN configurations only.
    plain = {c: ms for c, ms in configs.items() if not ms[0].batchnorm}
    fig, axes = new_figure(2, 3)
    for row, (metric, ylabel, what) in enumerate(
        [
            ("train/loss", "training loss (cross-entropy, nats)", "training loss"),
            ("test/error", "test error (%)", "test error"),
        ]
    ):
        curves = {c: _kcurve(ms, metric) for c, ms in plain.items()}
        for col, (part, window) in enumerate(windows):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **_style(plain[config]))
            if window:
                zoom(ax, list(curves.values()), *window)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            panel_title(ax, "abcdef"[3 * row + col], f"{what}, {part}")
    axes[0, 0].legend()
    fig.suptitle(f"Fig. 4, 11-layer CNN without BN (mean ± std over seeds) — {context}")
    w.section("Fig. 4: learning curves without batch normalization")
    w.figure(fig, "fig4_learning_curves", f"Fig. 4 reproduction ({context})")

    # Fig. 5: ELU vs X, each with and without BN.
    fig, axes = new_figure(2, 3)
    for col, other in enumerate(["relu", "srelu", "lrelu"]):
        chosen = [c for c in ("elu", "elu+bn", other, f"{other}+bn") if c in configs]
        curves = {c: _kcurve(configs[c], "test/error") for c in chosen}
        for row in range(2):
            ax = axes[row, col]
            for config, curve in curves.items():
                label = f"{config} (n={curve.n})"
                plot_curve(ax, curve, label=label, **_style(configs[config]))
            if row == 1:
                zoom(ax, list(curves.values()), END * xmax, xmax)
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel("test error (%)")
            part = "end" if row else "full run"
            panel_title(ax, "abcdef"[3 * row + col], f"ELU vs {unit_name(other)}, {part}")
        axes[0, col].legend()
    fig.suptitle(f"Fig. 5, with and without BN (dashed: BN) — {context}")
    w.section("Fig. 5: with and without batch normalization")
    w.figure(fig, "fig5_batchnorm", f"Fig. 5 reproduction ({context})")

    _cifar100_table(a, w)
    _wilcoxon_section(a, w)


def _cifar100_table(a: Analysis, w: ReportWriter) -> None:
    reason = not_comparable_reason(a.members, "cifar100")
    rows, csv_rows = [], []
    for config in a.configs():
        err = describe(list(a.finals(config, "test/error").values()))
        loss = describe(list(a.finals(config, "train/loss").values()))
        paper = find_reported(a.reported, a.experiment, "test_error", config)
        paper_std = find_reported(a.reported, a.experiment, "test_error_std", config)
        paper_text = "—"
        diff: float | None = None
        if paper is not None:
            paper_text = f"{paper.value:.2f}"
            if paper_std is not None:
                paper_text += f" ± {paper_std.value:.2f}"
            if reason is None and err.n:
                diff = err.mean - paper.value
        if paper is None:
            diff_text = "— (no paper number)"
        elif reason is not None:
            diff_text = "not comparable"
        else:
            diff_text = fmt(diff) if diff is not None else "—"
        rows.append([config, err.n, err.text(2), loss.text(4), paper_text, diff_text])
        csv_rows.append(
            [
                config,
                err.n,
                err.mean,
                err.std,
                loss.mean,
                loss.std,
                paper.value if paper else None,
                paper_std.value if paper_std else None,
                diff,
                reason or "",
            ]
        )
    w.section("Final test error (finished members, mean ± std)")
    w.table(
        [
            "configuration",
            "n",
            "test error (%)",
            "training loss",
            "paper test error (%)",
            "ours − paper (pp)",
        ],
        rows,
    )
    w.csv(
        "final_values.csv",
        [
            "configuration",
            "n",
            "test_error_mean",
            "test_error_std",
            "train_loss_mean",
            "train_loss_std",
            "paper_test_error",
            "paper_test_error_std",
            "difference",
            "not_comparable_because",
        ],
        csv_rows,
    )
    if reason is not None:
        w.text(
            f"**Not comparable with the paper's numbers:** {reason}. "
            "The paper's column is shown for reference only; no differences are computed."
        )
    else:
        w.text("The paper's numbers are CIFAR-100, no BN, 10 runs (PAPER.md §5.3).")
    w.text("(CSV: `final_values.csv`)")


def cifar100_comparisons(a: Analysis) -> list[Comparison]:
    """Every paired comparison of PAPER.md §6, on final test error and final training loss."""
    pairs = [("elu", other) for other in ("srelu", "relu", "lrelu")]
    pairs.append(("elu", "relu+bn"))
    pairs += [(f"{unit}+bn", unit) for unit in UNITS]
    out = []
    for metric in ("test/error", "train/loss"):
        for first, second in pairs:
            out.append(
                compare(
                    a.finals(first, metric),
                    a.finals(second, metric),
                    group_a=first,
                    group_b=second,
                    metric=metric,
                )
            )
    return out


def _wilcoxon_section(a: Analysis, w: ReportWriter) -> None:
    comparisons = cifar100_comparisons(a)
    configs = a.configs()
    rows, csv_rows = [], []
    for c in comparisons:
        paper = find_reported(a.reported, a.experiment, "wilcoxon_p", c.label)
        paper_text = f"p < {paper.value:g}" if paper else "—"
        absent = [g for g in (c.group_a, c.group_b) if g not in configs]
        note = f"no members of {', '.join(absent)}" if absent else c.note
        rows.append(
            [
                c.label,
                c.metric,
                c.n,
                c.k_of_n,
                fmt(c.mean_a, 3),
                fmt(c.mean_b, 3),
                fmt_p(c.p_less),
                fmt_p(c.p_two_sided),
                c.method,
                f"{fmt_p(c.min_p_less)} / {fmt_p(c.min_p_two_sided)}",
                paper_text,
                note.strip("; "),
            ]
        )
        csv_rows.append(
            [
                c.label,
                c.metric,
                c.group_a,
                c.group_b,
                c.n,
                c.a_wins,
                c.ties,
                c.mean_a,
                c.mean_b,
                c.p_less,
                c.p_two_sided,
                c.method,
                c.min_p_less,
                c.min_p_two_sided,
                paper.value if paper else None,
                note.strip("; "),
            ]
        )
    w.section("Wilcoxon signed-rank tests (PAPER.md §6)")
    w.text(
        "Pairs are matched by seed (run r of both configurations starts from the same "
        "weights). One-sided: `scipy.stats.wilcoxon(A, B, alternative='less')`, i.e. A's "
        "final value is lower (better) than B's; two-sided alongside. 'A better' counts the "
        "pairs where A's value is lower. Finished members only."
    )
    w.table(
        [
            "comparison (A vs B)",
            "metric",
            "n",
            "A better",
            "mean A",
            "mean B",
            "p one-sided",
            "p two-sided",
            "method",
            "smallest p (one/two-sided)",
            "paper",
            "note",
        ],
        rows,
    )
    w.csv(
        "wilcoxon.csv",
        [
            "comparison",
            "metric",
            "group_a",
            "group_b",
            "n",
            "a_better",
            "ties",
            "mean_a",
            "mean_b",
            "p_one_sided_less",
            "p_two_sided",
            "method",
            "smallest_p_one_sided",
            "smallest_p_two_sided",
            "paper_p_upper_bound",
            "note",
        ],
        csv_rows,
    )
    reason = not_comparable_reason(a.members, "cifar100")
    if reason:
        w.text(f"The paper's p-values are for CIFAR-100 at its budget; here: {reason}.")
    ns = sorted({c.n for c in comparisons if c.n > 0})
    w.text(*(min_p_note(n) for n in ns) if ns else (min_p_note(0),))
    w.text("(CSV: `wilcoxon.csv`)")


def phase_ends(member: Member) -> list[tuple[str, int]]:
    """(phase name, last step of the phase) for the 18-layer schedule.

    If the records carry a `phase` field, its last step per phase is used; otherwise the D1
    schedule's phase ends are placed at the same fractions of the member's total steps.
    """
    phases: dict[str, int] = {}
    for record in member.records:
        if record.get("phase") is not None:
            phases[str(record["phase"])] = max(
                phases.get(str(record["phase"]), 0), int(record["step"])
            )
    if phases:
        return sorted(phases.items(), key=lambda kv: kv[1])
    total = (member.summary or {}).get("steps")
    if total is None:
        total = max((int(r["step"]) for r in member.records), default=0)
    return [(name, round(int(total) * frac)) for name, frac in D1_PHASES]


def _error_at(member: Member, start: int, end: int) -> tuple[float, int] | None:
    """The last test/error logged in (start, end]: (value, step)."""
    x, y = member.series("test/error", "step")
    inside = (x > start) & (x <= end)
    if not inside.any():
        return None
    return float(y[inside][-1]), int(x[inside][-1])


def report_cifar_18layer(a: Analysis, w: ReportWriter) -> None:
    datasets = [d for d in ("cifar10", "cifar100") if any(m.dataset == d for m in a.members)]
    datasets += sorted({m.dataset for m in a.members} - set(datasets))
    ours = {}
    reasons = {}
    for d in datasets:
        members = [m for m in a.members if m.dataset == d]
        values = [m.final("test/error") for m in members if m.status == FINISHED]
        ours[d] = describe([v for v in values if v is not None])
        reasons[d] = not_comparable_reason(members, d)

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
    our_cells, diff_cells = [], []
    for d in columns:
        stats = ours.get(d)
        our_cells.append(stats.text(2) if stats and stats.n else "—")
        paper = find_reported(a.reported, a.experiment, f"test_error_{d}", "ELU-Network")
        if stats is None or not stats.n or paper is None:
            diff_cells.append("—")
            diff = None
        elif reasons[d]:
            diff_cells.append("not comparable")
            diff = None
        else:
            diff = stats.mean - paper.value
            diff_cells.append(f"{diff:+.2f}")
        if stats is not None:
            csv_rows.append(
                ["ELU-Network (ours)", d, "ours", stats.mean, stats.std, diff, reasons.get(d) or ""]
            )
    rows.append(["**ELU-Network (ours)**"] + our_cells + [a.context()])
    rows.append(
        ["ours − paper ELU-Network (pp)"]
        + diff_cells
        + [
            "; ".join(f"{dataset_label(d, None)}: {reasons[d]}" for d in columns if reasons.get(d))
            or "comparable"
        ]
    )
    w.section("Table 1: test error (%)")
    w.table(["network", "CIFAR-10", "CIFAR-100", "note"], rows)
    w.csv(
        "table1.csv",
        ["network", "dataset", "source", "test_error", "std", "difference", "note"],
        csv_rows,
    )
    for d in columns:
        if reasons.get(d):
            w.text(f"**{dataset_label(d, None)}: not comparable with the paper:** {reasons[d]}.")
    w.text("Paper values marked [VERIFY] come from recollection (PAPER.md §9). (CSV: `table1.csv`)")

    # Test error at the end of each phase.
    rows = []
    for m in sorted(a.members, key=lambda m: (m.dataset, m.seed)):
        start = 0
        for name, end in phase_ends(m):
            hit = _error_at(m, start, end)
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
            curve = _kcurve(members, metric)
            plot_curve(ax, curve, label=f"ELU (n={curve.n})", color=color_for("elu"))
            for m in members[:1]:
                for _, end in phase_ends(m)[:-1]:
                    ax.axvline(end / 1000.0, color="gray", lw=0.7, ls=":")
            ax.set_xlabel("iterations (×1000)")
            ax.set_ylabel(ylabel)
            label = data_label(members)
            panel_title(ax, "abcdefgh"[row * len(datasets) + col], f"{label}: {what}")
            ax.legend()
    fig.suptitle(f"18-layer ELU network (dotted: phase ends) — {a.context()}")
    w.section("Learning curves")
    w.figure(fig, "cifar_18layer_curves", f"18-layer network learning curves ({a.context()})")
