import pytest
from omegaconf import OmegaConf

from elurepro import assemble
from tests.hydra_utils import experiments, load_config


@pytest.mark.parametrize("experiment", experiments())
@pytest.mark.parametrize("budget", ["paper", "short", "smoke"])
def test_every_experiment_composes_and_plans(experiment, budget):
    cfg = load_config(f"experiment={experiment}", f"budget={budget}")
    OmegaConf.resolve(cfg)
    assert cfg.name == experiment
    chunks = assemble.plan_chunks(cfg)
    assert chunks and all(chunks)


def test_mnist_meanact_matches_paper_section_5_1():
    cfg = load_config("experiment=mnist_meanact")
    assert list(cfg.model.sizes) == [784] + [128] * 8 + [10]
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.train.batch_size, cfg.train.length) == (
        0.01,
        0.0,
        64,
        300,
    )
    members = assemble.build_members(cfg)
    assert sorted({m.group for m in members}) == ["elu", "lrelu", "relu"]
    assert sorted({m.seed for m in members}) == [0, 1, 2, 3, 4]
    lrelu = {m.activation.kwargs.get("alpha") for m in members if m.activation.name == "lrelu"}
    assert lrelu == {0.1}


def test_smoke_budget_limits_seeds():
    members = assemble.build_members(load_config("experiment=mnist_meanact", "budget=smoke"))
    assert sorted({m.seed for m in members}) == [0, 1]


def _key(*overrides: str, drop_tf32: bool = False, fingerprint: str = "f" * 16) -> str:
    """The folder of member elu-s0 of mnist_meanact under ``overrides``."""
    cfg = load_config("experiment=mnist_meanact", *overrides)
    if drop_tf32:  # as written by a version of the suite without the key
        cfg = OmegaConf.create(OmegaConf.to_container(cfg))
        del cfg.execution["tf32"]
    sweep = assemble.make_sweep(cfg, {"name": "mnist", "fingerprint": fingerprint})
    (member,) = [m for m in assemble.build_members(cfg) if m.id == "elu-s0"]
    return str(sweep.member_dir(member).relative_to(cfg.runs_dir)), sweep.member_key(member)


def test_identity_ignores_where_but_not_what():
    a = _key("runs_dir=/x")
    b = _key("runs_dir=/y", "device=cpu")
    c = _key("optim.lr=0.02")
    assert a == b != c


def test_run_identity_ignores_where_and_later_defaults_but_not_the_mathematics():
    """A run's folder: the same for a different runs folder or device, and for a config from
    before `execution.tf32` existed; different when the mathematics changes."""
    base = _key()
    assert _key("runs_dir=/elsewhere", "device=cpu", "progress=false") == base
    assert _key(drop_tf32=True) == base
    assert _key("execution.tf32=true") != base
    assert _key("optim.lr=0.02") != base
    assert _key("execution.bf16=true") != base
