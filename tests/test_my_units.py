"""A unit of your own (``tests/my_units.py``) through the paper's protocol, with no entry in
elurepro: its formula against an independent expression, its parameters in its label and run
identity, every kind of model (MLP population, CNN, SPP net), and one-line errors.

To check a unit of yours, copy this file and ``my_units.py`` beside each other, point ``UNIT`` at
your ``module:attribute`` and write its formula in ``formula``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from elurepro import assemble
from elurepro.activations import build_activation, parse_activation
from elurepro.analysis.collect import collect_members, unit_label
from elurepro.assemble.validate import validate_config
from elurepro.errors import ConfigError
from tests.hydra_utils import load_config
from tests.mnist_files import write_mnist
from tests.my_units import StarReLU
from tests.train_utils import mnist_smoke, train

REPO = Path(__file__).resolve().parent.parent
UNIT = {"name": "tests.my_units:StarReLU", "scale": 0.8, "bias": -0.2}
LABEL = "tests.my_units:StarReLU_bias-0.2_scale0.8"
OVERRIDE = "members.activations=[elu,{name: tests.my_units:StarReLU, scale: 0.8, bias: -0.2}]"


def formula(v: float, scale: float = 0.8, bias: float = -0.2) -> float:
    """StarReLU written out for one number: scale * max(v, 0)^2 + bias."""
    return scale * max(v, 0.0) ** 2 + bias


def test_formula_against_an_independent_expression() -> None:
    x = torch.linspace(-4, 4, 161, dtype=torch.float64)
    want = torch.tensor([formula(float(v)) for v in x], dtype=torch.float64)
    torch.testing.assert_close(build_activation(**UNIT)(x), want)


def test_gradient_against_finite_differences() -> None:
    x = torch.tensor([-2.3, -0.4, 0.3, 1.1, 2.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(build_activation(**UNIT), (x,))


def test_parameters_are_in_the_label_and_the_identity() -> None:
    assert parse_activation(UNIT).label == LABEL
    # Every parameter is shown, defaults too: the label follows from the stored identity alone.
    assert (
        parse_activation("tests.my_units:StarReLU").label == "tests.my_units:StarReLU_bias0_scale1"
    )
    cfg = load_config("experiment=mnist_meanact", OVERRIDE, "members.seeds=[3]")
    validate_config(cfg)
    elu, own = assemble.build_members(cfg)
    assert own.folder == f"{LABEL}/s3"
    assert own.identity()["activation"] == "tests.my_units:StarReLU"
    assert own.identity()["activation_params"] == {"bias": -0.2, "scale": 0.8}
    sweep = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": "0" * 16})
    other = load_config(
        "experiment=mnist_meanact", OVERRIDE.replace("0.8", "0.9"), "members.seeds=[3]"
    )
    (_, own_09) = assemble.build_members(other)
    assert sweep.member_key(own) != sweep.member_key(own_09)
    assert sweep.member_key(elu) != sweep.member_key(own)


def _own_modules(net: nn.Module) -> list[StarReLU]:
    return [m for m in net.modules() if isinstance(m, StarReLU)]


def test_it_trains_in_an_mlp_population_and_the_analysis_names_it(tmp_path: Path) -> None:
    mnist = write_mnist(tmp_path / "data", n_train=2000, n_test=300)
    cfg = mnist_smoke(
        mnist,
        tmp_path / "runs",
        OVERRIDE,
        "budget.max_seeds=1",
        "model.sizes=[784,32,32,10]",
        "data.val_size=500",
    )
    validate_config(cfg)
    population = assemble.build_population(cfg, assemble.build_members(cfg), torch.device("cpu"))
    assert len(_own_modules(population)) >= 1
    sweep, status = train(cfg)
    assert status == "finished"
    summary = json.loads((sweep.root / LABEL / "s0" / "summary.json").read_text())
    assert summary["status"] == "finished" and math.isfinite(summary["final"]["train/loss"])
    assert summary["member"]["activation_params"] == {"bias": -0.2, "scale": 0.8}
    # The analysis labels it from what the run stored, without importing tests.my_units.
    assert {m.unit for m in collect_members(tmp_path / "runs")} == {"elu", LABEL}
    assert unit_label("gone.module:Unit", {"scale": 0.8}) == "gone.module:Unit_scale0.8"


@pytest.mark.slow
def test_the_command_trains_it_and_the_analysis_compares_it(tmp_path: Path) -> None:
    mnist = write_mnist(tmp_path / "data", n_train=2000, n_test=300)
    runs, report = tmp_path / "runs", tmp_path / "report"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        *("-m", "elurepro.train", "experiment=mnist_meanact", "budget=smoke", OVERRIDE),
        *(f"data.root={mnist}", f"runs_dir={runs}", "data.val_size=500", "progress=false"),
        *("budget.max_seeds=1", "model.sizes=[784,32,32,10]"),
    ]
    for args in (
        command,
        ["-m", "elurepro.analyze", "mnist_meanact", str(runs), "--out", str(report)],
    ):
        done = subprocess.run(
            [sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
    text = (report / "report.md").read_text()
    assert f"{LABEL} vs elu" in text and (report / "paired_differences.png").is_file()


@pytest.mark.parametrize(
    "experiment,images,hidden",
    [
        ("cifar100_11layer", (2, 3, 32, 32), 10),  # ten hidden conv layers
        ("imagenet_15layer_spp", (2, 3, 128, 128), 14),  # 12 conv and 2 FC layers
    ],
)
def test_it_runs_in_the_cnns_with_the_same_initial_weights(experiment, images, hidden) -> None:
    cfg = load_config(f"experiment={experiment}", "budget=smoke", OVERRIDE)
    validate_config(cfg)
    members = [m for m in assemble.build_members(cfg) if m.seed == 0 and not m.batchnorm]
    nets = assemble.build_population(cfg, members, torch.device("cpu"), num_classes=10).members
    elu, own = nets
    assert len(_own_modules(own)) == hidden and not _own_modules(elu)
    for key, value in elu.state_dict().items():  # seed r: the same weights for every unit
        torch.testing.assert_close(own.state_dict()[key], value, rtol=0, atol=0)
    scores = own(0.1 * torch.randn(*images))  # relu² grows with depth: small inputs
    scores.sum().backward()
    assert scores.shape == (2, 10) and torch.isfinite(scores).all()


@pytest.mark.parametrize(
    "name,says",
    [
        ("tests.no_such_module:StarReLU", "cannot import it (ModuleNotFoundError"),
        ("tests.my_units:NoSuchUnit", "cannot import it (AttributeError"),
        ("math:pi", "is a float, not an nn.Module factory"),
        ("os:getcwd", "gave a str, not an nn.Module"),
    ],
)
def test_a_unit_that_cannot_be_used_is_one_line(name: str, says: str) -> None:
    cfg = load_config("experiment=mnist_meanact", f"members.activations=[elu,{{name: {name}}}]")
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    message = str(caught.value)
    assert message.startswith("members.activations[1]=") and says in message, message
    assert "\n" not in message


def test_bad_parameters_of_your_own_unit_are_one_line() -> None:
    with pytest.raises(ConfigError, match=r"unknown scal \(parameters it takes: scale, bias\)"):
        parse_activation({"name": "tests.my_units:StarReLU", "scal": 0.8})
    with pytest.raises(ConfigError, match="scale='big' must be a float"):
        parse_activation({"name": "tests.my_units:StarReLU", "scale": "big"})
