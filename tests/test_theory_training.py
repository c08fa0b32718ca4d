"""The §3 diagnostics inside training: logged at the monitor's points, and training unchanged."""

from __future__ import annotations

import math

import pytest

from tests.train_utils import mnist_pair, records, train


def _cfg(mnist_root, runs, *overrides):
    return mnist_pair(mnist_root, runs, *overrides)


def _without(rows: list[dict], prefix: str) -> list[dict]:
    return [
        {k: v for k, v in r.items() if not k.startswith(prefix) and k != "wall_time"} for r in rows
    ]


@pytest.mark.filterwarnings("ignore:.*not the official release")
def test_theory_is_logged_and_changes_nothing_else(mnist_root, tmp_path):
    plain, _ = train(_cfg(mnist_root, tmp_path / "plain"))
    with_theory, _ = train(
        _cfg(mnist_root, tmp_path / "theory", "monitor.theory=true", "monitor.theory_images=200")
    )
    assert plain.root.name != with_theory.root.name  # logs differ: a run of its own
    for member in ("elu-s0", "relu-s0"):
        a, b = records(plain, member), records(with_theory, member)
        assert _without(a, "theory/") == _without(b, "theory/")
        measured = [r for r in b if "act/median" in r]
        assert measured and all("theory/q/layer2" in r for r in measured)
        assert not any(k.startswith("theory/") for r in a for k in r)
        for r in measured:
            assert 0.0 <= r["theory/q"] < 1.0
            assert -1.0 <= r["theory/ng_cos"] <= 1.0 or math.isnan(r["theory/ng_cos"])
