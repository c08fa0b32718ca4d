import math

import torch

from elurepro import assemble
from elurepro.tasks import Reconstruction
from tests.hydra_utils import load_config
from tests.train_utils import summary as read_summary
from tests.train_utils import train


def _cfg(mnist_root, runs, *overrides):
    return load_config(
        "experiment=mnist_autoencoder",
        "budget=smoke",
        f"data.root={mnist_root}",
        f"runs_dir={runs}",
        "progress=false",
        *overrides,
    )


def test_architecture_matches_section_5_2(mnist_root, tmp_path):
    cfg = _cfg(mnist_root, tmp_path)
    assert list(cfg.model.sizes) == [784, 1000, 500, 250, 30, 250, 500, 1000, 784]
    members = assemble.build_members(cfg)
    assert len(members) == 16 and {m.lr for m in members} == {1e-2, 1e-3, 1e-4, 1e-5}
    pop = assemble.build_population(cfg, members, torch.device("cpu"))
    # Independent count: untied weights of the encoder and its mirror, plus one bias per unit.
    enc = [(784, 1000), (1000, 500), (500, 250), (250, 30)]
    per_member = sum(a * b for a, b in enc) * 2 + (1000 + 500 + 250 + 30) + (250 + 500 + 1000 + 784)
    assert per_member == 2_837_314
    assert sum(p.numel() for p in pop.parameters()) == 16 * per_member
    out = pop(torch.rand(16, 5, 784))
    assert out.shape == (16, 5, 784)


def test_reconstruction_error_by_hand():
    logits = torch.tensor([[[0.0, 2.0, -1.0], [1.0, 1.0, 1.0]]])  # 1 member, 2 images, 3 pixels
    x = torch.tensor([[0.0, 1.0, 0.5], [1.0, 0.0, 0.25]])
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    sse = [
        sum((sig(o) - t) ** 2 for o, t in zip(lo, xi))
        for lo, xi in zip(logits[0].tolist(), x.tolist())
    ]
    bce = [
        sum(-(t * math.log(sig(o)) + (1 - t) * math.log(1 - sig(o))) for o, t in zip(lo, xi))
        for lo, xi in zip(logits[0].tolist(), x.tolist())
    ]
    task = Reconstruction("mean")
    sums = task.eval_sums(logits, x, None)
    assert math.isclose(sums["recon_error"].item(), sum(sse), rel_tol=1e-6)
    assert math.isclose(sums["loss"].item(), sum(b / 3 for b in bce), rel_tol=1e-6)
    assert math.isclose(task.loss(logits, x.unsqueeze(0), None).item(), sum(bce) / 6, rel_tol=1e-6)
    assert math.isclose(
        Reconstruction("sum").loss(logits, x.unsqueeze(0), None).item(), sum(bce) / 2, rel_tol=1e-6
    )


def test_smoke_run_records_every_member_and_divergence(mnist_root, tmp_path):
    cfg = _cfg(
        mnist_root,
        tmp_path,
        "members.activations=[elu,relu]",
        "members.lrs=[0.01,100.0]",
        "optim.lr=0.01",
    )
    members = assemble.build_members(cfg)
    sweep, status = train(cfg, members)
    assert status == "finished"
    summaries = {m.id: read_summary(sweep, m.id) for m in members}
    assert set(summaries) == {m.id for m in members}
    for member_id, summary in summaries.items():
        if "lr100" in member_id:
            assert summary["status"] == "diverged" and summary["diverged_at_step"] >= 1
        else:
            assert summary["status"] == "finished"
            assert 0 < summary["final"]["test/recon_error"] < 784
