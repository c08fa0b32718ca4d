"""What a newcomer sees first: the project's own line for a typo'd key, a hint for a bare
experiment name, a ``--help`` without internal configs, and the analysis command the trainer
prints being the one ``make`` runs. The command runs in this process (Hydra's own ``main``)."""

from __future__ import annotations

import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from elurepro import train

REPO = Path(__file__).resolve().parent.parent
# runpy runs the module again as __main__ after this file imported it; that is the point.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.elurepro.train. found in sys.modules:RuntimeWarning"
)


def _command(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``python -m elurepro.train <args>``: exit status, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", [train.__file__, *args])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as done:
        # As `python -m` runs it (Hydra finds configs/ from the file of a __main__ module).
        runpy.run_module("elurepro.train", run_name="__main__")
    out, err = capsys.readouterr()
    return done.value.code, out, err


@pytest.mark.parametrize(
    "args,line",
    [
        (["optim.lrr=0.1"], "optim.lrr: not a key of optim (known: lr, momentum, weight_decay,"),
        (["experiment=mnist_autoencoder", "lrr=1"], "lrr: not a key of the config (known: name,"),
        (
            ["experiment=cifar100_11layer", "data.gcn=1"],
            "data.gcn: not a key of data (known: name,",
        ),
        # two typos: the validator's order (sections before data), each named by its own key
        (["data.foo=1", "optim.lrr=0.1"], "optim.lrr: not a key of optim"),
    ],
)
def test_a_typod_key_gets_the_projects_own_line(monkeypatch, capsys, args, line) -> None:
    code, _, err = _command(monkeypatch, capsys, *args)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {err.strip()[len('error: ') :]}"]
    assert err.startswith(f"error: {line}"), err
    assert "+" not in err  # no advice to append the key that nothing reads


def test_a_bare_experiment_name_gets_the_hint(monkeypatch, capsys) -> None:
    code, _, err = _command(monkeypatch, capsys, "mnist_meanact")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "write experiment=mnist_meanact" in err
    code, _, err = _command(monkeypatch, capsys, "budget=demo", "mnist_meanactt")
    assert code == 2 and "experiment=<id>" in err and "mnist_autoencoder" in err


def test_other_refusals_keep_hydras_words(monkeypatch, capsys) -> None:
    code, _, err = _command(monkeypatch, capsys, "experiment=nope")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "Could not find 'experiment/nope'" in err


def test_help_lists_the_budgets_without_the_internal_base(monkeypatch, capsys) -> None:
    code, out, _ = _command(monkeypatch, capsys, "--help")
    assert code == 0
    groups = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    (budgets,) = [line for line in groups.splitlines() if line.startswith("budget:")]
    options = budgets.removeprefix("budget:").replace(" ", "").split(",")
    assert {"paper", "short", "demo", "smoke"} <= set(options)
    assert not [o for o in options if o.startswith("_")], budgets


def test_the_printed_analysis_is_the_one_make_runs() -> None:
    """``make -n demo`` (commands only, nothing run) against what the trainer prints after
    training the demo sweep, whose folder is runs/<experiment>/<data>-<budget>/d…-c…."""
    made = subprocess.run(
        ["make", "-n", "demo", "PY=python", "RUNS=runs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    (make_line,) = [line for line in made.stdout.splitlines() if "-m elurepro.analyze" in line]
    sweep = Path("runs/mnist_meanact/mnist-demo/d0123abcd-c4567ef01")
    printed = train.analyse_command("mnist_meanact", sweep)
    command, _, comment = printed.partition("#")
    assert shlex.split(command) == shlex.split(make_line)
    # The report goes where make demo says it is, under the runs folder, not into results/.
    (said,) = re.findall(r"table (\S+)/report\.md", made.stdout)
    assert comment.split()[-1] == said
