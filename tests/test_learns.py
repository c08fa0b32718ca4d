"""`python -m elurepro.learns`: every paper protocol starts sane and learns on real data.

The rules are tested on hand-made records; the MNIST protocols run in the default suite, the
CNNs (minutes to an hour on a CPU) as slow tests. Real-data cases skip without ELUREPRO_DATA.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from elurepro.learns import CASES, MARGIN, START_FACTOR, check, judge, main, report

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


def test_a_flat_training_loss_fails():
    flat = judge_(_records(2.3, [2.3] * 12))
    assert not flat.ok and any("(last third): not lower" in p for p in flat.problems)


def test_the_evaluation_loss_must_beat_chance_by_the_stated_margin():
    falling = [2.3] * 4 + [2.2] * 4 + [2.1] * 4
    bar = (1 - MARGIN) * LN10  # below ln 10 as well as below its start of 2.4
    rows = _records(2.4, falling)
    rows[-1]["test/loss"] = bar * 0.999
    assert judge_(rows).ok
    rows[-1]["test/loss"] = bar * 1.001
    v = judge_(rows)
    assert not v.ok and f"not {MARGIN:.0%} below both" in v.problems[0]


def test_a_fall_from_the_dropout_transient_back_to_ln_c_is_not_learning():
    # The 11-layer ELU net in training mode: 2.45 at its first iteration (dropout's noise), back
    # to ln 10 by the last third, its evaluation loss unmoved: the training loss fell by 6 %.
    rows = _records(2.28, [2.45, 2.41, 2.38, 2.34] + [2.31] * 4 + [2.30] * 4)
    rows[-1]["test/loss"] = 2.285
    v = judge_(rows)
    assert not v.ok and "evaluation loss 2.28 -> 2.285" in v.problems[0]


def test_a_member_at_a_smaller_learning_rate_must_lower_its_evaluation_loss():
    rows = _records(0.72, [0.72] * 9, lr=1e-5)  # ends at 0.9 x its start
    assert judge_(rows, math.log(2)).ok
    rows[-1]["test/loss"] = 0.73
    v = judge_(rows, math.log(2))
    assert not v.ok and "not lower" in v.problems[0]


def test_the_curve_pairs_each_evaluation_with_the_training_loss_since_the_one_before():
    rows = [{"step": 0, "test/loss": 2.4, "test/error": 90.0}]
    rows += [{"step": s, "train/loss": float(s), "lr": 0.01} for s in range(1, 7)]
    rows.insert(4, {"step": 3, "test/loss": 2.2, "test/error": 80.0})  # after step 3's record
    rows.append({"step": 6, "test/loss": 2.0, "test/error": 70.0})
    points = judge_(rows).curve
    assert [(c.step, c.loss, c.error) for c in points] == [
        (0, 2.4, 90.0),
        (3, 2.2, 80.0),
        (6, 2.0, 70.0),
    ]
    assert math.isnan(points[0].train)
    assert (points[1].train, points[2].train) == (2.0, 5.0)  # means of 1-3 and 4-6


def test_start_and_end_come_from_the_same_split():
    # MNIST evaluates its validation split throughout and adds the test split at the end (one
    # record with both): the end is the validation loss, as the start was.
    rows = [{"step": 0, "val/loss": 2.4, "val/error": 90.0}]
    rows += [{"step": s, "train/loss": 2.4 - 0.1 * s, "lr": 0.01} for s in range(1, 4)]
    rows.append({"step": 3, "val/loss": 2.0, "val/error": 70.0})
    rows.append({"step": 3, "val/loss": 2.0, "val/error": 70.0, "test/loss": 2.5})
    v = judge_(rows)
    assert (v.start, v.end) == (2.4, 2.0) and v.ok, v.problems
    assert [c.step for c in v.curve] == [0, 3]  # the final evaluation's repeat is one point


def test_the_report_carries_each_members_curve():
    rows = _records(2.4, [2.3] * 5 + [2.0] * 5 + [1.8] * 5)
    v = judge_(rows)
    v.steps = 15
    text = report([v], "cpu", "--only x")
    assert "| x | 15 | elu/s0 |" in text
    curve = text.split("## Learning curves")[1]
    assert "| 0 | 2.4000 | – | – |" in curve
    assert f"| 15 | {2.4 * 0.9:.4f} | – | {(5 * 2.3 + 5 * 2.0 + 5 * 1.8) / 15:.4f} |" in curve


def test_unknown_experiment_is_one_line(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--only", "mnist_meanactt"])
    assert err.value.code == 2
    assert "unknown case(s) mnist_meanactt" in capsys.readouterr().err


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
def test_a_check_judges_its_own_runs_only(mnist_root, tmp_path):
    """One runs folder, three checks: each judges its own members at its own --steps."""
    case = replace(CASES["mnist_meanact"], overrides=("members.activations=[elu,relu]",))
    data = (f"data.root={mnist_root}",)
    assert len(check(case, 3, "cpu", tmp_path, extra=data)) == 2
    relu = replace(case, overrides=("members.activations=[relu]",))
    (same,) = check(relu, 3, "cpu", tmp_path, extra=data)  # finished above: judged, not trained
    (longer,) = check(relu, 4, "cpu", tmp_path, extra=data)  # another sweep beside the first
    assert (same.member, same.steps, same.curve[-1].step) == ("relu/s0", 3, 3)
    assert (longer.member, longer.steps, longer.curve[-1].step) == ("relu/s0", 4, 4)


def test_a_case_can_check_some_members_of_an_experiment_on_their_own():
    relu = CASES["cifar_18layer-relu"]
    assert relu.experiment == "cifar_18layer" and relu.steps > CASES["cifar_18layer"].steps
    assert "members.activations=[relu]" in relu.overrides


@pytest.mark.filterwarnings("ignore:.*not the official release")
def test_the_check_fails_a_protocol_that_diverges(shared_data, tmp_path):
    """The same path on a learning rate that blows the MLP up: the command must say so."""
    case = replace(CASES["mnist_meanact"], overrides=("optim.lr=200", "members.activations=[elu]"))
    (v,) = check(case, 9, "cpu", tmp_path)
    assert not v.ok and any("diverged" in p for p in v.problems)


# Each CNN case at its own iterations (learns.CASES): minutes for the SPP net, hours for the
# 18-layer net on a CPU (its ReLU member's 600 iterations took 2.4 h on a 2-core AVX2 EPYC).
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*LOSSY")
@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.data != "mnist"])
def test_cnn_protocols_learn(name, shared_data, tmp_path):
    verdicts = check(CASES[name], CASES[name].steps, "cpu", tmp_path)
    assert verdicts and all(v.ok for v in verdicts), [(v.member, v.problems) for v in verdicts]
