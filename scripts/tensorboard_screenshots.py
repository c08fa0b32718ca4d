"""Screenshots of a sweep's TensorBoard dashboards, through a real server and headless Chromium.

    python scripts/tensorboard_screenshots.py <sweep folder> [--out results/tensorboard]

Starts ``tensorboard --logdir <sweep folder>`` on 127.0.0.1, waits until it serves every member
run and HParams session, then has Chromium (Debian: ``apt-get install -y chromium``) render:

- ``scalars_elu_vs_relu.png``: the Scalars tab filtered to the ELU and ReLU members
  (run regex ``^(elu|relu)/``) and to the headline tags;
- ``custom_scalars_mean_std.png``: the Custom Scalars tab, mean ± std over seeds per epoch;
- ``hparams_by_unit.png``: the HParams table, one row per configuration (mean over seeds);
- ``histograms_unit_means.png``: the per-unit mean activations of one layer, ELU and ReLU;
- ``text_provenance.png``: a member's provenance and configuration (Text tab).

Each view is a URL fragment of TensorBoard's own client-side state (``#scalars&regexInput=...``).
PNGs are reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import argparse
import json
import os
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

WAIT_S = 180  # the longest we wait for TensorBoard to have read the sweep


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _members(logdir: Path) -> set[str]:
    return {p.parent.relative_to(logdir).as_posix() for p in logdir.rglob("member.json")}


def _wait_until_loaded(base: str, logdir: Path, proc: subprocess.Popen) -> None:
    """Until every member run is listed and has its HParams session (bounded by WAIT_S)."""
    members = _members(logdir)
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
            runs = set(_get(f"{base}/data/runs"))
            groups = _get(f"{base}/data/plugin/hparams/session_groups", request)["sessionGroups"]
            sessions = {s["name"] for g in groups for s in g["sessions"]}
            if members <= runs and members <= sessions:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError):
            pass  # not listening, or not everything read yet
        time.sleep(1.0)
    sys.exit(f"TensorBoard did not serve all {len(members)} members within {WAIT_S} s")


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
        timeout=120,
    )
    # A 256-colour palette: the pages are flat colours and lines, and the files stay small.
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "logdir", type=Path, help="a sweep folder (after python -m elurepro.analyze)"
    )
    parser.add_argument("--out", type=Path, default=Path("results/tensorboard"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--layer", type=int, default=1, help="layer of the histogram view")
    parser.add_argument("--member", default="elu/s0", help="member whose text is shown")
    args = parser.parse_args(argv)
    logdir = args.logdir.resolve()
    if not _members(logdir):
        sys.exit(f"no member folders (member.json) under {logdir}")
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
    views = {
        "scalars_elu_vs_relu.png": (
            _fragment(
                "scalars",
                regexInput="^(elu|relu)/",
                tagFilter="^(train/loss|val/error|act/median)$",
                _smoothingWeight="0",
            ),
            (1500, 800),
        ),
        "custom_scalars_mean_std.png": (
            _fragment("custom_scalars", regexInput="^_mean_std/", _smoothingWeight="0"),
            (1500, 1000),
        ),
        "hparams_by_unit.png": (_fragment("hparams"), (1900, 460)),
        "histograms_unit_means.png": (
            _fragment(
                "histograms",
                regexInput="^(elu|relu)/s0$",
                tagFilter=f"^act/units/layer{args.layer}$",
            ),
            (1300, 480),
        ),
        "text_provenance.png": (
            _fragment("text", regexInput=f"^{args.member}$", tagFilter="provenance"),
            (1500, 900),
        ),
    }
    try:
        _wait_until_loaded(base, logdir, proc)
        with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
            for name, (fragment, size) in views.items():
                path = args.out / name
                _screenshot(args.chromium, base + "/" + fragment, path, size, 20_000, Path(profile))
                print(f"{path} ({path.stat().st_size // 1024} KB): {base}/{fragment}")
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
