"""TensorBoard URLs that open a sweep's figure: the paper's tags, one colour per configuration,
no smoothing.

The views are TensorBoard's own URL state: the Time Series dashboard's query parameters
(``runFilter``, ``tagFilter``, ``smoothing``, ``runColorGroup=regex:...``, read by TensorBoard
2.x's deep-link parser) and the Custom Scalars dashboard's fragment (``regexInput``,
``_smoothingWeight``). A run's name is its folder relative to TensorBoard's logdir, so every run
filter accepts the sweep's runs under any logdir at or above the sweep folder (``runs``,
``runs/<experiment>``, the sweep folder itself) and no other sweep's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote, urlencode

SERVER = "http://localhost:6006/"  # `tensorboard --logdir ...` serves here by default
MEAN_STD_DIR = "_mean_std"  # the analysis's runs of mean ± std over seeds, one per configuration
# Left as they are in a URL (allowed in a query and a fragment, and read back unchanged); "+"
# is not: TensorBoard's query parser would read it as a space.
_URL_SAFE = "/()*:?$,;!'@"


def _escape(text: str) -> str:
    """``text`` as a regex that matches it literally (only the characters regexes treat
    specially are escaped, so that the URL stays readable)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", text)


def run_prefix(sweep_folder: Path) -> str:
    """A regex for what comes before a run of the sweep in its name: nothing (logdir: the sweep
    folder), ``d…-c…/`` (its parent) or ``…/<data>-<budget>/d…-c…/`` (any folder above)."""
    folder = Path(sweep_folder).absolute()
    return f"(((.*/)?{_escape(folder.parent.name)}/)?{_escape(folder.name)}/)?"


def _tags(tags: Sequence[str], prefix: str = "") -> str:
    return f"^{_escape(prefix)}({'|'.join(_escape(t) for t in tags)})$"


def _time_series(params: dict[str, str], server: str) -> str:
    return f"{server}?{urlencode(params, safe=_URL_SAFE, quote_via=quote)}#timeseries"


def members_url(sweep_folder: Path, metrics: Sequence[str], server: str = SERVER) -> str:
    """Time Series: every member of the sweep, coloured by configuration; ``metrics`` are keys
    of metrics.jsonl (a per-layer one has a tag of its own in the members' runs)."""
    from elurepro.runlog import tb_tag  # (torch and TensorBoard: imported on demand)

    params = {
        "runFilter": rf"^{run_prefix(sweep_folder)}[^_/][^/]*/s\d+$",
        "tagFilter": _tags([tb_tag(m) for m in metrics]),
        "smoothing": "0",
        "runColorGroup": r"regex:([^/]+)/s\d+$",
    }
    return _time_series(params, server)


def mean_std_url(
    sweep_folder: Path, tags: Sequence[str], tag_prefix: str, server: str = SERVER
) -> str:
    """Time Series: the mean over seeds of each configuration (the ``_mean_std`` runs), one
    colour each; ``tag_prefix`` is the sweep's prefix of those series (``mean_std@3f2a/``)."""
    params = {
        "runFilter": mean_std_runs(sweep_folder),
        "tagFilter": _tags(tags, tag_prefix),
        "smoothing": "0",
        "runColorGroup": f"regex:{MEAN_STD_DIR}/([^/]+)$",
    }
    return _time_series(params, server)


def mean_std_runs(sweep_folder: Path) -> str:
    """The run filter of the sweep's ``_mean_std`` runs."""
    return f"^{run_prefix(sweep_folder)}{MEAN_STD_DIR}/"


def custom_scalars_url(sweep_folder: Path, server: str = SERVER) -> str:
    """Custom Scalars: the sweep's mean ± std bands. That dashboard enables no run by default
    when more than 40 runs match its run filter; this filter matches one run per configuration
    of the sweep, so they show without ticking any."""
    state = {"regexInput": mean_std_runs(sweep_folder), "_smoothingWeight": "0"}
    return f"{server}#custom_scalars&" + "&".join(
        f"{key}={quote(value, safe=_URL_SAFE)}" for key, value in state.items()
    )
