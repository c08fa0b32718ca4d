"""`python -m elurepro.learns`: every paper protocol starts sane and learns on real data.

The rules are tested on hand-made records; the MNIST protocols run in the default suite, the
CNNs (minutes to an hour on a CPU) as slow tests. Real-data cases skip without ELUREPRO_DATA.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from elurepro.learns import CASES, MARGIN, START_FACTOR, check, judge, main

LN10 = math.log(10)


def _records(start: float, losses: list[float], lr: float = 0.01) -> list[dict]:
    rows = [{"step": 0, "test/loss": start}]
    rows += [{"step": i + 1, "train/loss": v, "lr": lr} for i, v in enumerate(losses)]
    rows.append({"step": len(losses), "test/loss": start * 0.9})
    return rows


def judge_(rows: list[dict], reference: float = LN10, status: str = "finished", **summary):
    return judge("x", "elu/s0", rows, {"status": status, **summary}, reference, 0.01)


def test_a_sane_falling_member_learns():
    v = judge_(_records(2.4, [2.3] * 5 + [2.0] * 5 + [1.8] * 5))
    assert v.ok, v.problems


def test_a_start_far_above_ln_c_fails():
    # The 18-layer net before the fix: test loss 8.69 at iteration 0 (ln 10 = 2.30).
    v = judge_(_records(8.69, [3.0] * 5 + [2.0] * 5))
    assert not v.ok and "starts at loss 8.69" in v.problems[0]
    assert START_FACTOR * LN10 < 8.69


def test_a_diverged_member_fails_with_its_iteration():
    v = judge_(_records(2.4, [97.8, 118163.0]), status="diverged", diverged_at_step=5)
    assert not v.ok and any("diverged at iteration 5" in p for p in v.problems)
    v = judge_(_records(2.4, [97.8, 5000.0, 118163.0, math.nan]))
    assert not v.ok and any("diverged at iteration 4" in p for p in v.problems)


def test_a_flat_loss_fails_and_the_margin_is_the_stated_one():
    flat = judge_(_records(2.3, [2.3] * 12))
    assert not flat.ok and f"not {MARGIN:.0%} lower" in flat.problems[0]
    just = 2.3 * (1 - MARGIN) * 0.999
    assert judge_(_records(2.3, [2.3] * 8 + [just] * 4)).ok


def test_a_member_at_a_smaller_learning_rate_must_lower_its_evaluation_loss():
    rows = _records(0.72, [0.72] * 9, lr=1e-5)  # ends at 0.9 x its start
    assert judge_(rows, math.log(2)).ok
    rows[-1]["test/loss"] = 0.73
    v = judge_(rows, math.log(2))
    assert not v.ok and "not lower" in v.problems[0]


def test_unknown_experiment_is_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--only", "mnist_meanactt"])
    assert err.value.code == 2
    assert "unknown experiment(s) mnist_meanactt" in capsys.readouterr().err


def test_a_set_hydra_refuses_is_one_line(capsys, tmp_path):
    assert main(["--only", "mnist_meanact", "--set", "optim.lrr=0.1", "--runs", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "optim.lrr" in lines[0] and "Traceback" not in lines[0]


@pytest.mark.filterwarnings("ignore:.*not the official release")
@pytest.mark.parametrize(
    ("experiment", "extra", "members"),
    [
        ("mnist_meanact", (), 3),
        # The default suite checks Fig. 3's largest rate; make learns checks all four.
        ("mnist_autoencoder", ("members.lrs=null",), 4),
    ],
)
def test_mnist_protocols_learn(experiment, extra, members, shared_data, tmp_path):
    verdicts = check(CASES[experiment], 60, "cpu", tmp_path, extra=extra)
    assert len(verdicts) == members
    assert all(v.ok for v in verdicts), [(v.member, v.problems) for v in verdicts if not v.ok]


@pytest.mark.filterwarnings("ignore:.*not the official release")
def test_the_check_fails_a_protocol_that_diverges(shared_data, tmp_path):
    """The same path on a learning rate that blows the MLP up: the command must say so."""
    case = replace(CASES["mnist_meanact"], overrides=("optim.lr=200", "members.activations=[elu]"))
    (v,) = check(case, 9, "cpu", tmp_path)
    assert not v.ok and any("diverged" in p for p in v.problems)


# Known: under N(0, 1/fan_in) the 18-layer net no longer diverges and starts at ln C, but sits on
# that plateau for its first 60 iterations; its ELU member leaves it after about 200 (test loss
# 2.306 -> 2.222 at 300; results/learns/). Strict: the day it learns in 60, this test says so.
PLATEAU = pytest.mark.xfail(
    strict=True, reason="18-layer net on a plateau at ln C for its first 60 iterations"
)


# Known: under N(0, 1/fan_in) the SPP net's ReLU member is flat for 60 iterations at the learns
# budget's 1/16 width (its ELU member learns); He (class-score layer at 0.4/fan_in), which lets it
# learn there, blows up at full width (results/learns/imagenet_15layer_spp-fullwidth-*).
FLAT_RELU = pytest.mark.xfail(
    strict=True, reason="SPP net's ReLU member flat at ln C for its first 60 iterations"
)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LOSSY")
@pytest.mark.parametrize(
    "experiment",
    [
        "cifar100_11layer",
        pytest.param("cifar_18layer", marks=PLATEAU),
        pytest.param("imagenet_15layer_spp", marks=FLAT_RELU),
    ],
)
def test_cnn_protocols_learn(experiment, shared_data, tmp_path):
    verdicts = check(CASES[experiment], CASES[experiment].steps, "cpu", tmp_path)
    assert all(v.ok for v in verdicts), [(v.member, v.problems) for v in verdicts if not v.ok]
