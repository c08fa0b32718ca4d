"""What every experiment's report shares: the members by configuration, and the report writer."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from elurepro.activations import parse_activation
from elurepro.analysis.collect import DIVERGED, FINISHED, UNFINISHED, MemberRun
from elurepro.analysis.format import Column, markdown_table, record_rows, write_csv
from elurepro.analysis.plotting import save_figure
from elurepro.analysis.provenance import budget_label, data_label, not_comparable_reason, provenance
from elurepro.analysis.reported import Reported
from elurepro.analysis.table import RunTable, from_members
from elurepro.errors import ConfigError

# The paper's units first, in its order, then the rest alphabetically.
PAPER_UNITS = ("elu", "srelu", "lrelu", "relu")


@dataclass(frozen=True)
class ConfigInfo:
    """What a configuration is, beyond its name: unit label, BN, learning rate, data set."""

    name: str
    unit: str
    batchnorm: bool
    lr: float | None
    dataset: str

    @property
    def setting(self) -> tuple[str, bool, float | None]:
        """What pairs must share apart from the unit: data set, BN, learning rate."""
        return (self.dataset, self.batchnorm, self.lr)


def baseline_label(spec: str) -> str:
    """`--baseline` as a unit label: ``elu``, ``lrelu`` (= alpha 0.1) or a label as given."""
    try:
        return parse_activation(spec).label
    except ConfigError:
        return spec.lower()


@dataclass
class Analysis:
    """The members of one sweep of one experiment, grouped into configurations (equal `group`).

    When the members span several data sets (Table 1), a configuration is `group (dataset)`.
    """

    experiment: str
    members: list[MemberRun]
    reported: list[Reported]
    notes: list[str] = field(default_factory=list)
    baseline: str = "elu"
    paper_datasets: tuple[str, ...] = ()
    in_paper: bool = True  # False: an experiment a user added, with nothing to compare
    runs: RunTable | None = None  # a table the members are read in already (the leaderboard's)
    _configs: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _table: RunTable | None = field(default=None, init=False, repr=False, compare=False)

    def table(self) -> RunTable:
        """The members' logged values as one long-format table, built once."""
        # Rebuilt when the members were replaced (identity, not equality: no record compared).
        if self._table is None or list(map(id, self._table.members)) != list(map(id, self.members)):
            if self.runs is None:
                self._table = from_members(self.members)
            else:
                self._table = self.runs.select(self.members)
        return self._table

    @property
    def multi_dataset(self) -> bool:
        return len({m.dataset for m in self.members}) > 1

    def config(self, member: MemberRun) -> str:
        return f"{member.group} ({member.dataset})" if self.multi_dataset else member.group

    def info(self, config: str) -> ConfigInfo:
        m = self.configs()[config][0]
        return ConfigInfo(config, m.unit, m.batchnorm, m.lr, m.dataset)

    def infos(self) -> list[ConfigInfo]:
        return [self.info(c) for c in self.configs()]

    def find_config(self, unit: str, setting: tuple[str, bool, float | None]) -> str | None:
        """The configuration of `unit` with `setting` (data set, BN, lr), if there is one."""
        for info in self.infos():
            if info.unit == unit and info.setting == setting:
                return info.name
        return None

    def units(self) -> list[str]:
        """Unit labels present, the baseline first, then the paper's order, then the rest."""
        units = sorted({m.unit for m in self.members}, key=_unit_order)
        if self.baseline in units:
            units.remove(self.baseline)
            units.insert(0, self.baseline)
        return units

    @property
    def not_comparable(self) -> str | None:
        """Why these numbers are not comparable with the paper's (None when they are)."""
        reason = not_comparable_reason(self.members, self.paper_datasets or None)
        if self.in_paper:
            return reason
        return "; ".join(filter(None, [f"the paper has no experiment {self.experiment}", reason]))

    def caption(self, figure: str, paper_figure: bool = True) -> str:
        """A figure caption; only a paper-budget run on the official data is a reproduction
        of one of the paper's figures, and every other caption says it is not comparable."""
        if self.not_comparable:
            if paper_figure:
                return f"{figure} layout, NOT comparable with the paper ({self.context()})"
            return f"{figure} ({self.context()}; NOT comparable with the paper)"
        if paper_figure:
            return f"{figure} reproduction ({self.context()})"
        return f"{figure} ({self.context()})"

    def claims_caveat(self) -> str | None:
        """The sentence set before any answer to the paper's claims, when not comparable."""
        if not self.not_comparable:
            return None
        return (
            "Answered for these runs only, under the statement at the top of this report: "
            f"not comparable with the paper's numbers ({self.not_comparable})."
        )

    def configs(self) -> dict[str, list[MemberRun]]:
        """Configuration -> its members sorted by seed; configurations in first-seen order."""
        # Cached per list of members (the reports ask for it hundreds of times).
        key = tuple(id(m) for m in self.members)
        if self._configs is None or self._configs[0] != key:
            out: dict[str, list[MemberRun]] = {}
            for m in sorted(self.members, key=lambda m: (_config_order(m), m.seed)):
                out.setdefault(self.config(m), []).append(m)
            self._configs = (key, out)
        return {c: list(ms) for c, ms in self._configs[1].items()}

    def finished(self, config: str) -> list[MemberRun]:
        return [m for m in self.configs().get(config, []) if m.status == FINISHED]

    def finals(self, config: str, metric: str) -> dict[int, float]:
        """seed -> final value of `metric`, finished members only, missing values left out."""
        out = {}
        table = self.table()
        for m in self.finished(config):
            value = table.final(m, metric)
            if value is not None:
                out[m.seed] = value
        return out

    def context(self, members: Sequence[MemberRun] | None = None) -> str:
        """'<data set>, budget=<budget>' for figure titles."""
        members = self.members if members is None else members
        return f"{data_label(members)}, {budget_label(members)}"

    def missing(self) -> list[tuple[str, int, str]]:
        """(configuration, seed, likely member id) for seeds another configuration has."""
        configs = self.configs()
        all_seeds = {m.seed for m in self.members}
        out = []
        for config, members in configs.items():
            for seed in sorted(all_seeds - {m.seed for m in members}):
                out.append((config, seed, _guess_id(members, seed)))
        return out


def _unit_order(unit: str) -> tuple:
    return (PAPER_UNITS.index(unit) if unit in PAPER_UNITS else len(PAPER_UNITS), unit)


def _config_order(m: MemberRun) -> tuple:
    # Data set, learning rate (high first), no-BN before BN, then units in the paper's order.
    return (m.dataset, m.lr is None, -(m.lr or 0), m.batchnorm, _unit_order(m.unit), m.group)


def _guess_id(members: Sequence[MemberRun], seed: int) -> str:
    for m in members:
        if m.id.endswith(str(m.seed)):
            return m.id[: len(m.id) - len(str(m.seed))] + str(seed)
    return f"{members[0].group} seed {seed}"


class ReportWriter:
    """Collects Markdown sections, writes tables (Markdown + CSV) and figures (PNG + PDF)."""

    def __init__(self, out_dir: Path, title: str, banner: str | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = [f"# {title}", ""]
        if banner:
            self.lines += [banner, ""]
        self.tables: list[Path] = []
        self.figure_files: list[Path] = []
        self.figures: dict[str, Figure] = {}

    def section(self, title: str) -> None:
        self.lines += [f"## {title}", ""]

    def text(self, *paragraphs: str) -> None:
        for paragraph in paragraphs:
            self.lines += [paragraph, ""]

    def bullets(self, items: Sequence[str]) -> None:
        self.lines += [f"- {item}" for item in items] + [""]

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        csv_name: str | None = None,
    ) -> None:
        """Add a Markdown table; with `csv_name` also write it as CSV."""
        self.lines += [markdown_table(headers, rows), ""]
        if csv_name:
            self.csv(csv_name, headers, rows)
            self.lines += [f"(CSV: `{csv_name}`)", ""]

    def records(
        self, records: Sequence[Any], columns: Sequence[Column], csv_name: str | None = None
    ) -> None:
        """A table of named records: Markdown from each Column's text, CSV from its value."""
        headers, rows, csv_headers, csv_rows = record_rows(records, columns)
        self.lines += [markdown_table(headers, rows), ""]
        if csv_name:
            self.csv(csv_name, csv_headers, csv_rows)
            self.lines += [f"(CSV: `{csv_name}`)", ""]

    def csv(self, name: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
        path = write_csv(self.out_dir / name, headers, rows)
        self.tables.append(path)
        return path

    def figure(self, fig: Figure, stem: str, caption: str) -> None:
        paths = save_figure(fig, self.out_dir, stem)
        self.figure_files += paths
        self.figures[stem] = fig
        self.lines += [f"![{caption}]({stem}.png)", "", f"*{caption}* (PDF: `{stem}.pdf`)", ""]

    def write(self, name: str = "report.md") -> Path:
        path = self.out_dir / name
        path.write_text("\n".join(self.lines).rstrip() + "\n")
        return path


def _asked_label(spec: Any) -> str:
    try:
        return parse_activation(spec).label
    except ConfigError:  # a unit this registry does not know: its name as written
        name = spec if isinstance(spec, str) else (spec or {}).get("name", "")
        return str(name).lower()


def requested_filter(members: Sequence[MemberRun]) -> Callable[[str], bool]:
    """Which configurations ("relu", "elu+bn") the runs' own configs asked for.

    Read from the resolved config in each member's summary (or provenance.json); a
    configuration counts as requested when some run lists its unit (as
    `elurepro.activations.parse_activation` labels it: {name: lrelu, alpha: 0.3} is
    ``lrelu_alpha0.3``, not ``lrelu``) and its BatchNorm setting. Without any recorded config,
    everything counts as requested (absent then means missing).
    """
    asked: list[tuple[set[str], set[bool]]] = []
    for m in members:
        config = (m.summary or {}).get("config") or (m.provenance or {}).get("config") or {}
        spec = config.get("members") or {}
        if spec.get("activations") is not None:
            names = {_asked_label(a) for a in spec["activations"]}
            asked.append((names, set(spec.get("batchnorm") or [False])))
    if not asked:
        return lambda config: True

    def requested(config: str) -> bool:
        unit, bn = config.removesuffix("+bn"), config.endswith("+bn")
        return any(unit in units and bn in bns for units, bns in asked)

    return requested


def status_section(a: Analysis, w: ReportWriter, expected: Sequence[str] = ()) -> list[str]:
    """Counts per configuration and a list of every member that needs attention.

    Returns the attention lines (also printed by the CLI).
    """
    configs = a.configs()
    missing = a.missing()
    rows = []
    for config, members in configs.items():
        count = {s: sum(m.status == s for m in members) for s in (FINISHED, UNFINISHED, DIVERGED)}
        gaps = [seed for c, seed, _ in missing if c == config]
        rows.append(
            [
                config,
                count[FINISHED],
                count[UNFINISHED],
                count[DIVERGED],
                len(gaps),
                " ".join(str(m.seed) for m in members),
            ]
        )
    requested = requested_filter(a.members)
    # An expected configuration ("elu", "elu+bn") is present at any learning rate: a
    # learning-rate sweep names its configurations "elu-lr0.01", "elu-lr0.02", ...
    present = {info.unit + ("+bn" if info.batchnorm else "") for info in a.infos()}
    without_members = [c for c in expected if c not in present]
    absent = [c for c in without_members if requested(c)]
    not_requested = [c for c in without_members if not requested(c)]
    rows += [[c, 0, 0, 0, "all", "—"] for c in absent]
    rows += [[c, 0, 0, 0, "not requested", "—"] for c in not_requested]
    w.section("Runs")
    w.text(provenance(a.members))
    w.table(
        ["configuration", "finished", "unfinished", "diverged", "missing", "seeds"],
        rows,
        csv_name="status.csv",
    )
    if not_requested:
        w.text(
            "Not run because these runs' configs did not ask for them (`members.activations`, "
            f"`members.batchnorm`): {', '.join(not_requested)}. Comparisons with them are empty."
        )
    attention = []
    for m in a.members:
        if m.status == UNFINISHED:
            last = a.table().last_step(m)
            where = "no metrics yet" if last is None else f"last logged step {last}"
            attention.append(f"unfinished: {m.id} ({a.config(m)}, {where}) in {m.folder}")
        elif m.status == DIVERGED:
            step = m.diverged_at_step
            epoch = a.table().step_to_epoch(m, step) if step is not None else None
            at = "" if step is None else f" at step {step}"
            at += "" if epoch is None else f" (epoch {epoch:.1f})"
            attention.append(f"diverged: {m.id} ({a.config(m)}){at} in {m.folder}")
    for config, seed, guess in missing:
        attention.append(
            f"missing: {guess} ({config}, seed {seed}) has no member folder, "
            f"while other configurations have seed {seed}; its pairs are left out"
        )
    for config in absent:
        attention.append(f"missing: configuration {config} has no members at all")
    for m in a.members:
        attention += [f"warning: {note}" for note in m.warnings]
    attention += a.notes
    w.section("Members needing attention")
    if attention:
        w.text(
            "These members are listed, not averaged in: means, std and tests use finished "
            "members only, and paired tests use only seeds present on both sides."
        )
        w.bullets(attention)
    else:
        w.text(
            f"None: all {len(a.members)} members finished and every configuration has "
            "the same seeds."
        )
    return attention
