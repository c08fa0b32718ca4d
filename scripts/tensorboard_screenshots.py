"""Screenshots of TensorBoard's dashboards, through a real server and headless Chromium.

    python scripts/tensorboard_screenshots.py <logdir> <sweep folder> [--out results/tensorboard]

Starts ``tensorboard --logdir <logdir>`` on 127.0.0.1 (the whole runs folder, or any folder at
or above the analysed sweep folder), waits until it serves every member run and the HParams
session of every member that has ended, then has Chromium (Debian: ``apt-get install -y
chromium``) render, each from the URL a user would open:

- ``fig2_time_series.png``: the URL the analysis prints for the sweep's figure (Time Series: the
  mean over seeds of each configuration, one colour each, no smoothing, the paper's tags);
- ``members_time_series.png``: the URL training prints (every member of the sweep, coloured by
  configuration);
- ``time_series_groups.png``: the Time Series tab of the whole logdir as it opens, without URL
  state: its card groups (``act`` holds Fig. 2's median only; per-layer cards are in
  ``act_median`` and ``act_units``);
- ``custom_scalars_mean_std.png``: the Custom Scalars URL the analysis prints (mean ± std bands);
- ``hparams.png``: the HParams table of the whole logdir;
- ``histograms_unit_means.png``: the per-unit mean activations of one layer, ELU and ReLU;
- ``text_provenance.png``: a member's provenance and configuration (Text tab).

Headless Chromium without a GPU draws none of the Time Series' WebGL lines, so those two views
get TensorBoard's own ``forceSVG=true`` query parameter on top of the printed URL. PNGs are
reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from elurepro.analysis.headline import figure_tags
from elurepro.analysis.tb_export import mean_std_prefix
from elurepro.runlog import tb_tag
from elurepro.tblinks import (
    MEAN_STD_DIR,
    SERVER,
    custom_scalars_url,
    mean_std_url,
    members_url,
    run_prefix,
)

ATTEMPTS = 3  # pictures of a Time Series view before giving up
WAIT_S = 180  # the longest we wait for TensorBoard to have read the folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _members(logdir: Path) -> tuple[set[str], set[str]]:
    """Run names of every member under `logdir`, and of those that have ended."""
    runs, ended = set(), set()
    for info in logdir.rglob("member.json"):
        name = info.parent.relative_to(logdir).as_posix()
        runs.add(name)
        if (info.parent / "summary.json").exists():
            ended.add(name)
    return runs, ended


def _wait_until_loaded(base: str, logdir: Path, proc: subprocess.Popen) -> None:
    """Until every member run and every mean ± std run serves its scalars, and every ended
    member has its HParams session. (A run is listed before its scalars are read: a view opened
    then draws empty cards.)"""
    members, ended = _members(logdir)
    curves = members | {
        run.relative_to(logdir).as_posix()
        for run in logdir.rglob(f"{MEAN_STD_DIR}/*")
        if run.is_dir()
    }
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 1000,
    }
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"TensorBoard exited with status {proc.returncode}")
        try:
            scalars = _get(f"{base}/data/plugin/scalars/tags")
            served = {run for run, tags in scalars.items() if tags}
            groups = _get(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]
            sessions = {s["name"] for g in groups for s in g["sessions"]}
            if curves <= served and ended <= sessions:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
            pass  # not listening, or not everything read yet
        time.sleep(1.0)
    sys.exit(f"TensorBoard did not serve all {len(curves)} runs within {WAIT_S} s")


def _first_card_blank(path: Path) -> bool:
    """Whether a Time Series view's first card is still empty: under load, headless Chromium
    can take the picture before the card's data has come (the same URL draws it a moment
    later)."""
    with Image.open(path) as image:
        card = image.convert("L").crop((330, 230, 750, 460))
        return card.getextrema()[0] > 245  # not one pixel darker than near-white: no axis, no line


def _fragment(tab: str, **state: str) -> str:
    return "#" + "&".join(
        [tab, *(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in state.items())]
    )


def _screenshot(
    chromium: str, url: str, path: Path, size: tuple[int, int], budget_ms: int, profile: Path
) -> None:
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # root in a container
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            # Virtual time lets the page's timers (loading, chart animation) run to completion.
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={path}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    # A 256-colour palette: the pages are flat colours and lines, and the files stay small.
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def views(logdir: Path, sweep: Path, member: str, layer: int) -> dict[str, tuple[str, tuple]]:
    """File name -> (URL path and state, window size) of each view."""
    infos = sorted(sweep.rglob("member.json"))
    if not infos:
        sys.exit(f"no member folders (member.json) under {sweep}")
    experiment = json.loads(infos[0].read_text())["experiment"]
    tags = figure_tags(experiment)
    prefix = run_prefix(sweep)

    def printed(url: str, svg: bool = False) -> str:
        # As printed, for TensorBoard's default address; here the server's is put in front.
        url = url.removeprefix(SERVER)
        return url.replace("#", "&forceSVG=true#", 1) if svg else url

    return {
        "fig2_time_series.png": (
            printed(mean_std_url(sweep, tags, mean_std_prefix(infos[0].parent)), svg=True),
            (1500, 800),
        ),
        "members_time_series.png": (printed(members_url(sweep, tags), svg=True), (1500, 800)),
        "time_series_groups.png": ("?forceSVG=true#timeseries", (1500, 900)),
        "custom_scalars_mean_std.png": (printed(custom_scalars_url(sweep)), (1500, 1600)),
        "hparams.png": ("#hparams", (1900, 900)),
        "histograms_unit_means.png": (
            _fragment(
                "histograms",
                regexInput=f"^{prefix}(elu|relu)/s0$",
                tagFilter=f"^{tb_tag(f'act/units/layer{layer}')}$",
            ),
            (1300, 480),
        ),
        "text_provenance.png": (
            _fragment("text", regexInput=f"^{prefix}{re.escape(member)}$", tagFilter="provenance"),
            (1500, 900),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", type=Path, help="what `tensorboard --logdir` is given")
    parser.add_argument("sweep", type=Path, help="the analysed sweep folder whose figure is shown")
    parser.add_argument("--out", type=Path, default=Path("results/tensorboard"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--layer", type=int, default=1, help="layer of the histogram view")
    parser.add_argument("--member", default="elu/s0", help="member whose text is shown")
    args = parser.parse_args(argv)
    logdir, sweep = args.logdir.resolve(), args.sweep.resolve()
    if not sweep.is_relative_to(logdir):
        sys.exit(f"{sweep} is not under the logdir {logdir}")
    shown = views(logdir, sweep, args.member, args.layer)
    args.out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w", prefix="tensorboard.", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        _wait_until_loaded(base, logdir, proc)
        for name, (state, size) in shown.items():
            path = args.out / name
            url = f"{base}/{state}"
            for _ in range(ATTEMPTS):
                # A fresh profile each time: TensorBoard keeps settings of the last view in the
                # browser's storage, and they must not leak into the next one.
                with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                    _screenshot(args.chromium, url, path, size, 30_000, Path(profile))
                if not (url.endswith("#timeseries") and _first_card_blank(path)):
                    break
            else:
                sys.exit(f"{path}: Time Series drew no curves in {ATTEMPTS} attempts")
            print(f"{path} ({path.stat().st_size // 1024} KB): {url}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()
        os.unlink(log.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
