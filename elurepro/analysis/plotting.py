"""Figure helpers in the paper's style: mean ± std curves, zoom panels, PNG + PDF output.

Figures are built as `matplotlib.figure.Figure` objects, which render with the Agg canvas and
never touch pyplot's global state (no display needed, safe inside other programs).
"""

from __future__ import annotations

import contextlib
import hashlib
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextPath

from elurepro.analysis.collect import FINISHED, MemberRun
from elurepro.analysis.table import RunTable

DPI = 150

STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.2,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,
}

_COLORS = {
    "elu": "tab:blue",
    "relu": "tab:red",
    "lrelu": "tab:green",
    "srelu": "tab:orange",
    "selu": "tab:purple",
    "celu": "tab:brown",
    "gelu": "tab:pink",
    "silu": "tab:gray",
    "mish": "tab:olive",
    "prelu": "tab:cyan",
}


_NAMES = {"elu": "ELU", "relu": "ReLU", "lrelu": "LReLU", "srelu": "SReLU", "prelu": "PReLU"}


def unit_name(unit: str) -> str:
    """The paper's spelling of a unit's name (ELU, ReLU, LReLU, SReLU); parameters of a
    variant as in its label (``lrelu_alpha0.3`` -> ``LReLU_alpha0.3``); a unit of your own
    without its module (``mypkg.acts:StarReLU_bias0_scale0.8`` -> ``StarReLU_bias0_scale0.8``)."""
    if ":" in unit:
        return unit.rpartition(":")[2]
    base, _, rest = unit.partition("_")
    return _NAMES.get(base, base.upper()) + (f"_{rest}" if rest else "")


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the figure style to everything created inside the block."""
    with mpl.rc_context(STYLE):
        yield


def color_for(unit: str) -> str:
    """A colour per unit label, the same in every figure and every run of the analysis.

    The registry's units have fixed tab10 colours; a parameter variant (``lrelu_alpha0.3``) gets
    a lighter or darker shade of its unit's colour; any other name a colour of tab20b/tab20c
    chosen by a hash of the name (stable across processes, unlike Python's ``hash``).
    """
    unit = unit.removesuffix("+bn")
    if unit in _COLORS:
        return mpl.colors.to_hex(_COLORS[unit])
    digest = int(hashlib.sha256(unit.encode()).hexdigest(), 16)
    base = unit.split("_")[0]
    if base in _COLORS:
        rgb = np.asarray(mpl.colors.to_rgb(_COLORS[base]))
        amount = 0.35 + 0.25 * (digest % 101) / 100
        target = 0.0 if (digest >> 8) % 2 else 1.0
        return mpl.colors.to_hex(rgb * (1 - amount) + target * amount)
    palette = list(mpl.colormaps["tab20b"].colors) + list(mpl.colormaps["tab20c"].colors)
    return mpl.colors.to_hex(palette[digest % len(palette)])


def new_figure(
    nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (3.4, 2.6)
) -> tuple[Figure, np.ndarray]:
    """A figure with an (nrows, ncols) array of axes, laid out without overlaps."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def legend(fig: Figure, ax: Axes, many: int = 4) -> None:
    """The legend of `ax`'s lines: inside the panel for a few, else one legend below the
    figure for all panels (a panel-sized legend of ten units would hide the curves)."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= many:
        ax.legend(handles, labels)
        return
    fig.legend(handles, labels, loc="outside lower center", ncols=min(5, len(labels)))


@dataclass
class Curve:
    """Mean and std over runs of one configuration's curve, at x points all runs share."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: int


def mean_curve(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> Curve:
    """Average several runs' (x, y) curves at the x points that every run logged.

    std is the sample std (ddof=1); zero for a single run.
    """
    curves = [(np.asarray(x, float), np.asarray(y, float)) for x, y in curves if len(x)]
    if not curves:
        empty = np.empty(0)
        return Curve(empty, empty, empty, 0)
    common = curves[0][0]
    for x, _ in curves[1:]:
        common = np.intersect1d(common, x)
    ys = np.stack([y[np.searchsorted(x, common)] for x, y in curves])
    std = ys.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(common))
    return Curve(common, ys.mean(axis=0), std, len(curves))


def finished_curve(
    members: Sequence[MemberRun],
    series: Callable[[MemberRun], tuple[np.ndarray, np.ndarray]],
    x_scale: float = 1.0,
) -> Curve:
    """Mean ± std of one configuration's curve over its finished members (x times x_scale)."""
    c = mean_curve([series(m) for m in members if m.status == FINISHED])
    return Curve(c.x * x_scale, c.mean, c.std, c.n)


def epoch_curve(
    table: RunTable, members: Sequence[MemberRun], metric: str, trained: bool = False
) -> Curve:
    """``metric`` against epochs, from the run table; `trained`: without epoch 0 (before
    training)."""
    series = table.epoch_series if trained else table.series
    return finished_curve(members, lambda m: series(m, metric))


def step_curve(table: RunTable, members: Sequence[MemberRun], metric: str) -> Curve:
    """``metric`` against iterations in thousands (the CNN and ImageNet figures' x axis)."""
    return finished_curve(members, lambda m: table.series(m, metric, "step"), 1e-3)


def config_style(members: Sequence[MemberRun]) -> dict[str, str]:
    """A configuration's line: its unit's colour, dashed with BN."""
    m = members[0]
    return {"color": color_for(m.unit), "linestyle": "--" if m.batchnorm else "-"}


def plot_curve(
    ax: Axes,
    curve: Curve,
    *,
    label: str,
    color: str,
    linestyle: str = "-",
) -> None:
    """Draw the mean line and, for several runs, a ± std ribbon."""
    if curve.n == 0:
        return
    ax.plot(curve.x, curve.mean, color=color, linestyle=linestyle, label=label)
    if curve.n > 1:
        ax.fill_between(
            curve.x, curve.mean - curve.std, curve.mean + curve.std, color=color, alpha=0.2, lw=0
        )


# The CNN figures' zoom windows (Figs. 4, 5) as fractions of the run: [0, START] and [END, 1].
ZOOM_START, ZOOM_END = 0.125, 0.8


def max_kstep(table: RunTable) -> float:
    """The last iteration any member logged, in thousands (the CNN figures' x range)."""
    steps = table.rows["step"]
    return (int(steps.max()) if len(steps) else 0) / 1000.0


def zoom(ax: Axes, curves: Sequence[Curve], lo: float, hi: float, pad: float = 0.08) -> None:
    """Limit `ax` to x in [lo, hi] and fit y to the curves (mean ± std) inside that window."""
    ax.set_xlim(lo, hi)
    parts = []
    for c in curves:
        inside = (c.x >= lo) & (c.x <= hi)
        parts += [c.mean[inside] - c.std[inside], c.mean[inside] + c.std[inside]]
    values = np.concatenate(parts) if parts else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size:
        low, high = float(values.min()), float(values.max())
        margin = (high - low) * pad or abs(high) * 0.05 or 1.0
        ax.set_ylim(low - margin, high + margin)


def log_scale_if_positive(ax: Axes) -> None:
    """Use a log y axis when everything drawn is positive (losses), else stay linear."""
    lim = ax.dataLim
    if np.isfinite([lim.y0, lim.y1]).all() and lim.y0 > 0:
        ax.set_yscale("log")


def panel_title(ax: Axes, letter: str, text: str, width: float | None = None) -> None:
    """``(a) text`` at the panel's top left; broken into lines ``width`` inches wide if given."""
    title = f"({letter}) {text}"
    fitted = title if width is None else fit_lines(title, width, _points("axes.titlesize"))
    ax.set_title(fitted, loc="left")


def figure_title(fig: Figure, text: str) -> None:
    """The figure's title, broken into lines that fit its width (none cut off at the edges)."""
    fig.suptitle(fit_lines(text, fig.get_figwidth() - 0.3, _points("figure.titlesize")))


def fit_lines(text: str, width: float, size: float) -> str:
    """``text`` broken at spaces into lines about ``width`` inches wide at ``size`` points."""
    inches = TextPath((0, 0), text, size=size).get_extents().width / 72
    per_char = inches / max(len(text), 1)
    return textwrap.fill(text, max(12, int(width / per_char)), break_long_words=False)


def _points(key: str) -> float:
    """A font size of the current style in points (resolves "large" and the like)."""
    return FontProperties(size=mpl.rcParams[key]).get_size_in_points()


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> list[Path]:
    """Write `<stem>.png` (150 dpi) and `<stem>.pdf` into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    # Lay out once and freeze it: both files get the same layout, computed only once.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    for path in paths:
        fig.savefig(path, dpi=DPI)
    return paths
