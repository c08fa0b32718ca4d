"""Figure helpers in the paper's style: mean ± std curves, zoom panels, PNG + PDF output.

Figures are built as `matplotlib.figure.Figure` objects, which render with the Agg canvas and
never touch pyplot's global state (no display needed, safe inside other programs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

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


def unit_name(activation: str) -> str:
    """The paper's spelling of a unit's name (ELU, ReLU, LReLU, SReLU)."""
    return _NAMES.get(activation, activation.upper())


@contextlib.contextmanager
def paper_style() -> Iterator[None]:
    """Apply the figure style to everything created inside the block."""
    with mpl.rc_context(STYLE):
        yield


def color_for(activation: str) -> str:
    if activation in _COLORS:
        return _COLORS[activation]
    palette = mpl.colormaps["tab10"].colors
    return mpl.colors.to_hex(palette[sum(map(ord, activation)) % len(palette)])


def new_figure(
    nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (3.4, 2.6)
) -> tuple[Figure, np.ndarray]:
    """A figure with an (nrows, ncols) array of axes, laid out without overlaps."""
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


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


def plot_curve(
    ax: Axes,
    curve: Curve,
    *,
    label: str,
    color: str,
    linestyle: str = "-",
    ribbon: bool = True,
) -> None:
    """Draw the mean line and, for several runs, a ± std ribbon."""
    if curve.n == 0:
        return
    ax.plot(curve.x, curve.mean, color=color, linestyle=linestyle, label=label)
    if ribbon and curve.n > 1:
        ax.fill_between(
            curve.x, curve.mean - curve.std, curve.mean + curve.std, color=color, alpha=0.2, lw=0
        )


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


def panel_title(ax: Axes, letter: str, text: str) -> None:
    ax.set_title(f"({letter}) {text}", loc="left")


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
