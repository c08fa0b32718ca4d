"""What a report says about short runs, and titles that fit: the early-loss window of
mnist_meanact follows the runs' real length (epochs 1–3 for a 3-epoch demo, 1–25 for longer
runs), and the paired-differences figure keeps its title and panel titles inside the figure and
apart from each other however narrow its panels and long its data description."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from elurepro.analysis.collect import collect_members
from elurepro.analysis.context import Analysis, ReportWriter
from elurepro.analysis.figures import fig2_mean_activation, paired_differences
from elurepro.analysis.headline import HEADLINES, label_of
from elurepro.analysis.plotting import paper_style
from elurepro.analysis.reported import default_reported_csv, load_reported
from elurepro.analysis.tables import comparisons
from tests.analysis_fakes import fake_meanact

EARLY_LOSS = next(h for h in HEADLINES["mnist_meanact"] if h.key == "early_train_loss")


def _analysis(tmp_path: Path, epochs: int, official: bool = True) -> Analysis:
    runs = tmp_path / "runs"
    fake_meanact(
        runs, groups=("elu", "relu"), seeds=range(3), epochs=epochs, layout="new", official=official
    )
    return Analysis(
        "mnist_meanact",
        collect_members(runs),
        load_reported(default_reported_csv()),
    )


@pytest.mark.parametrize("epochs,window", [(3, "epochs 1–3"), (30, "epochs 1–25")])
def test_the_early_loss_window_is_the_runs_own(tmp_path: Path, epochs: int, window: str) -> None:
    a = _analysis(tmp_path, epochs)
    assert label_of(a, EARLY_LOSS) == f"training loss, mean over {window}"
    (_, speed) = fig2_mean_activation.checks(a)
    assert f"over {window}," in speed
    assert ("the paper's window is epochs 1–25" in speed) == (epochs < 25)


def _text(artist: Artist, text: str) -> Text:
    """The one Text of ``artist`` that reads ``text`` (a title)."""
    assert text
    (found,) = artist.findobj(lambda a: isinstance(a, Text) and a.get_text() == text)
    return found


def _inside(inner: Bbox, outer: Bbox) -> bool:
    return (
        inner.x0 >= outer.x0 - 0.5
        and inner.x1 <= outer.x1 + 0.5
        and inner.y0 >= outer.y0 - 0.5
        and inner.y1 <= outer.y1 + 0.5
    )


def test_paired_differences_titles_fit_and_do_not_overlap(tmp_path: Path) -> None:
    # One unit against the baseline: the narrowest panels; other data: the longest description.
    a = _analysis(tmp_path, 3, official=False)
    with paper_style():
        w = ReportWriter(tmp_path / "out", "t")
        paired_differences.write(a, w, comparisons.write(a, w))
    fig = w.figures["paired_differences"]  # laid out as it was saved
    renderer = FigureCanvasAgg(fig).get_renderer()
    whole = fig.bbox
    assert _inside(_text(fig, fig.get_suptitle()).get_window_extent(renderer), whole)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    titles = [_text(ax, ax.get_title(loc="left")) for ax in visible]
    assert len(titles) == 2
    boxes = [t.get_window_extent(renderer) for t in titles]
    assert all(_inside(box, whole) for box in boxes)
    assert not boxes[0].overlaps(boxes[1]), [t.get_text() for t in titles]
