"""TheoryMonitor against direct float64 computations on tiny nets (numpy, explicit Fisher blocks,
hand-written backprop or a hand-run forward pass, full unfold), and its promise not to touch
training state."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elurepro.activations import activation_factory
from elurepro.models.convnet import StackConvNet
from elurepro.models.mlp import StackedMLP
from elurepro.models.population import MemberList
from elurepro.models.spp import SPPNet
from elurepro.monitor import ActivationMonitor
from elurepro.tasks import Classification, Reconstruction
from elurepro.theory import (
    TheoryMonitor,
    _ridge_solve,
    cosine,
    mean_quadratic_form,
    natural_gradient,
    patch_rows,
    per_example_loss,
)

NO_CAPS = dict(max_rows=10**9, max_unit_rows=10**9, max_units=10**9, max_dim=10**9)
TINY = np.finfo(np.float64).tiny


def ce(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy [K, B] in the output's dtype (float64 here)."""
    target = y.expand(out.shape[:2])
    return -out.log_softmax(-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


# ------------------------------------------------------------------ numpy references
def ref_layer(z: np.ndarray, delta: np.ndarray, batch: int, eps: float, damping: float) -> dict:
    """Per-unit references from all rows z [R, d] and deltas [R, J], unit by unit."""
    rows, d = z.shape
    mu = z.mean(0)
    s = z.T @ z / rows
    q = mu @ np.linalg.solve(s + eps * np.trace(s) / d * np.eye(d), mu)
    zt = np.hstack([z, np.ones((rows, 1))])
    q_delta, ng_cos = [], []
    for j in range(delta.shape[1]):
        dj = delta[:, j]
        if not np.any(dj):
            q_delta.append(np.nan)
            ng_cos.append(np.nan)
            continue
        w = dj**2 / np.sum(dj**2)
        mu_w = w @ z
        s_w = sum(w[i] * np.outer(z[i], z[i]) for i in range(rows))
        q_delta.append(mu_w @ np.linalg.solve(s_w + eps * np.trace(s_w) / d * np.eye(d), mu_w))
        fisher = sum(dj[i] ** 2 * np.outer(zt[i], zt[i]) for i in range(rows)) / rows
        g = (dj[:, None] * zt).mean(0)
        lam = damping * np.trace(fisher) / (d + 1)
        ng = np.linalg.solve(fisher + lam * np.eye(d + 1), g)
        ng_cos.append(g @ ng / (np.linalg.norm(g) * np.linalg.norm(ng)))
    grad_w = z.T @ delta / batch  # [d, J]: the mean-over-batch loss gradient
    grad_b = delta.sum(0) / batch
    shift = np.abs(mu @ grad_w)
    live = np.any(delta != 0, axis=0)  # 0 / 0 for a unit that never moves the loss: undefined
    return {
        "q": q,
        "q_delta": np.array(q_delta),
        "ng_cos": np.array(ng_cos),
        "bias_shift_ratio": np.where(live, shift / (np.abs(grad_b) + TINY), np.nan),
        "bias_shift_per_lr": shift,
    }


def elu(h: np.ndarray) -> np.ndarray:
    return np.where(h > 0, h, np.expm1(np.minimum(h, 0)))


def elu_slope(h: np.ndarray) -> np.ndarray:
    return np.where(h > 0, 1.0, np.exp(np.minimum(h, 0)))


def mlp_reference(pop: StackedMLP, k: int, x: np.ndarray, y: np.ndarray) -> list[tuple]:
    """(incoming z, delta of the receiving layer) per receiving layer of an ELU MLP member,
    by an explicit numpy forward pass and hand-written backprop of the cross-entropy."""
    ws = [m.weight[k].detach().numpy() for m in pop.net if hasattr(m, "weight")]
    bs = [m.bias[k, 0].detach().numpy() for m in pop.net if hasattr(m, "weight")]
    hs, zs = [], [x]
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = zs[-1] @ w + b
        hs.append(h)
        if i < len(ws) - 1:
            zs.append(elu(h))
    p = np.exp(hs[-1] - hs[-1].max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    deltas = [p - np.eye(p.shape[1])[y]]
    for i in range(len(ws) - 1, 1, -1):
        deltas.insert(0, (deltas[0] @ ws[i].T) * elu_slope(hs[i - 1]))
    return list(zip(zs[1:], deltas))


def _mlp(sizes, keys, seeds) -> StackedMLP:
    return StackedMLP(sizes, [activation_factory(a) for a in keys], keys, seeds).double()


# ------------------------------------------------------------------ pure functions
def test_natural_gradient_of_identity_fisher_is_the_gradient() -> None:
    g = torch.randn(4, 6, dtype=torch.float64)
    eye = torch.eye(6, dtype=torch.float64).expand(4, 6, 6)
    ng = natural_gradient(eye, g, damping=0.0)
    torch.testing.assert_close(ng, g, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(cosine(g, ng), torch.ones(4, dtype=torch.float64))
    # Relative damping: F = 2I with damping 0.5 is 3I.
    torch.testing.assert_close(natural_gradient(2 * eye, g, damping=0.5), g / 3)


def test_natural_gradient_solves_damped_system() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 5, 8))
    fisher = a @ a.transpose(0, 2, 1) / 8
    g = rng.normal(size=(3, 5))
    got = natural_gradient(torch.tensor(fisher), torch.tensor(g), damping=0.1).numpy()
    for f, gi, x in zip(fisher, g, got):
        want = np.linalg.solve(f + 0.1 * np.trace(f) / 5 * np.eye(5), gi)
        np.testing.assert_allclose(x, want, rtol=1e-10)


def test_batched_solve_on_two_threads() -> None:
    # Batched CPU LU on 2 threads fails on exactly this (pytorch/pytorch#142815).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        eye = torch.eye(151, dtype=torch.float64).repeat(2, 1, 1)
        ones = torch.ones(2, 151, dtype=torch.float64)
        torch.testing.assert_close(natural_gradient(eye, ones, damping=0.0), ones)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_solver_falls_back_for_indefinite_and_flags_non_finite() -> None:
    a = torch.tensor([[[1.0, 2.0], [2.0, 1.0]], [[2.0, 0.0], [0.0, float("nan")]]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    x = _ridge_solve(a.double(), b.double(), torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(x[0].numpy(), np.linalg.solve(a[0].numpy(), b[0].numpy()))
    assert torch.isnan(x[1]).all()


def test_q_zero_for_zero_mean_and_m_over_one_plus_m() -> None:
    rng = np.random.default_rng(2)
    half = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4))
    z = np.vstack([half, -half])  # exactly zero mean
    s = torch.tensor(z.T @ z / len(z))
    q0 = mean_quadratic_form(torch.tensor(z.mean(0)), s)
    assert abs(q0.item()) < 1e-12
    previous = -1.0
    for shift in [0.0, 0.3, 1.0, 3.0, 30.0]:
        zs = z + shift
        mu, cov = zs.mean(0), np.cov(zs.T, bias=True)
        m = mu @ np.linalg.solve(cov, mu)
        q = mean_quadratic_form(torch.tensor(mu), torch.tensor(zs.T @ zs / len(zs)), eps=0.0)
        assert q.item() == pytest.approx(m / (1 + m), rel=1e-9, abs=1e-12)
        assert previous < q.item() < 1.0
        previous = q.item()
    assert previous > 0.99


def test_patch_rows_match_unfold() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 9, 8, generator=gen)  # [K, B, C, H, W]
    geometry = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 2), dilation=(2, 1))
    full = F.unfold(x.flatten(0, 1), (3, 2), dilation=(2, 1), padding=(1, 2), stride=(2, 1))
    full = full.view(2, 3, full.shape[1], -1).transpose(2, 3).flatten(1, 2)  # [K, B*L, D]
    rows = torch.randperm(full.shape[1], generator=gen)[:17]
    coords = torch.randperm(full.shape[2], generator=gen)[:5]
    got = patch_rows(x, rows=rows, coords=coords, **geometry)
    torch.testing.assert_close(got, full[:, rows][:, :, coords], rtol=0, atol=0)
    torch.testing.assert_close(patch_rows(x, **geometry), full, rtol=0, atol=0)


# ------------------------------------------------------------------ the MLP against numpy
def test_mlp_metrics_match_explicit_fisher_blocks() -> None:
    pop = _mlp([5, 7, 6, 3], ["elu", "elu"], [0, 1])
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for m in pop.net:
            if hasattr(m, "bias"):
                m.bias.normal_(0, 0.5, generator=gen)
        pop.net[6].weight[1, 2] = 0  # member 1: hidden unit 2 of layer 2 cannot move the loss
    x = torch.randn(30, 5, generator=gen, dtype=torch.float64) + 0.5
    y = torch.randint(0, 3, (30,), generator=gen)
    monitor = TheoryMonitor(pop, 2, eps=1e-3, damping=1e-2, **NO_CAPS)
    lr = [0.1, 0.3]
    out = monitor.measure(x, y, ce, lr)
    assert monitor.num_layers == 2
    pooled = {name: [[], []] for name in ["mu", "bias_shift_ratio", "ng_cos", "q"]}
    for k in range(2):
        for n, (z, delta) in enumerate(mlp_reference(pop, k, x.numpy(), y.numpy()), start=1):
            ref = ref_layer(z, delta, 30, eps=1e-3, damping=1e-2)
            mu = np.abs(z.mean(0))
            got = {key: value[k].item() for key, value in out.items() if key.endswith(f"/layer{n}")}
            assert got[f"theory/mu_abs_median/layer{n}"] == pytest.approx(np.median(mu))
            assert got[f"theory/mu_abs_mean/layer{n}"] == pytest.approx(mu.mean())
            assert got[f"theory/q/layer{n}"] == pytest.approx(ref["q"], rel=1e-9)
            for name in ["q_delta", "ng_cos", "bias_shift_ratio", "bias_shift_per_lr"]:
                want = np.nanmedian(ref[name])
                assert got[f"theory/{name}/layer{n}"] == pytest.approx(want, rel=1e-8), name
            assert got[f"theory/bias_shift/layer{n}"] == pytest.approx(
                lr[k] * np.median(ref["bias_shift_per_lr"]), rel=1e-8
            )
            pooled["mu"][k].append(mu)
            pooled["q"][k].append(ref["q"])
            for name in ["bias_shift_ratio", "ng_cos"]:
                pooled[name][k].append(ref[name])
        assert out["theory/mu_abs_median"][k].item() == pytest.approx(
            np.median(np.concatenate(pooled["mu"][k]))
        )
        assert out["theory/q"][k].item() == pytest.approx(np.median(pooled["q"][k]), rel=1e-9)
        for name in ["bias_shift_ratio", "ng_cos"]:
            want = np.nanmedian(np.concatenate(pooled[name][k]))
            assert out[f"theory/{name}"][k].item() == pytest.approx(want, rel=1e-8), name
    # The unit that cannot move the loss is left out of the medians, not counted as 0 or NaN.
    assert all(torch.isfinite(v).all() for v in out.values())
    for key, value in out.items():
        assert value.dtype == torch.float64 and value.shape == (2,), key


def test_shared_and_per_member_inputs_agree() -> None:
    pop = _mlp([5, 6, 6, 3], ["elu", "relu"], [0, 1])
    x = torch.randn(20, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    monitor = TheoryMonitor(pop, 2)
    a = monitor.measure(x, y, ce)
    b = monitor.measure(x.expand(2, 20, 5), y.expand(2, 20), ce, shared=False)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-12, atol=0, equal_nan=True)


def test_q_vanishes_for_zero_mean_inputs_and_nears_one_for_large_means() -> None:
    # Identity units: layer 2 receives x W1 + b1, zero-mean for x symmetric and b1 = 0.
    pop = StackedMLP([8, 5, 3], [nn.Identity], ["id"], [0]).double()
    half = torch.randn(40, 8, dtype=torch.float64)
    x = torch.cat([half, -half])
    y = torch.randint(0, 3, (80,))
    monitor = TheoryMonitor(pop, 1, eps=0.0)
    assert monitor.measure(x, y, ce)["theory/q/layer1"].abs().item() < 1e-12
    qs = []
    for shift in [0.1, 1.0, 10.0, 100.0]:
        with torch.no_grad():
            pop.net[0].bias.fill_(shift)
        z = (x @ pop.net[0].weight[0].detach() + shift).numpy()
        cov = np.cov(z.T, bias=True)
        m = z.mean(0) @ np.linalg.solve(cov, z.mean(0))
        qs.append(monitor.measure(x, y, ce)["theory/q/layer1"].item())
        assert qs[-1] == pytest.approx(m / (1 + m), rel=1e-8)
    assert qs == sorted(qs) and qs[-1] > 0.999 and qs[-1] < 1


# ------------------------------------------------------------------ members measured alone
def _assert_same_metrics(a: dict, b: dict, k: int) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key][k], b[key][0], rtol=1e-9, atol=1e-12, equal_nan=True)


def test_stacked_member_equals_member_alone() -> None:
    caps = dict(max_rows=40, max_unit_rows=16, max_units=3, max_dim=5)  # all in force
    keys, seeds = ["elu", "relu", "relu"], [3, 4, 5]
    pop = _mlp([6, 9, 8, 7, 4], keys, seeds)
    alone = _mlp([6, 9, 8, 7, 4], keys[1:2], seeds[1:2])
    x = torch.rand(50, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    together = TheoryMonitor(pop, 3, **caps).measure(x, y, ce, 0.05)
    single = TheoryMonitor(alone, 1, **caps).measure(x, y, ce, 0.05)
    _assert_same_metrics(together, single, 1)


def _convnet(seed: int, batchnorm: bool = False, convention: str = "C") -> StackConvNet:
    torch.manual_seed(seed)
    net = StackConvNet(
        [["1x4x3"], ["1x5x2"], ["1x3x1"]],
        in_channels=2,
        input_size=8,
        activation=activation_factory("elu"),
        dropout=[0.2, 0.2, 0.0],
        convention=convention,
        batchnorm=batchnorm,
    ).double()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.normal_(0, 0.3)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return net


# ------------------------------------------------------------------ conv layers against unfold
def conv_reference(net: StackConvNet, x: torch.Tensor, y: torch.Tensor) -> list[tuple]:
    """(patch rows Z [B*L, D], delta rows [B*L, J], per-channel input means) per receiving conv,
    from a hand-run forward pass, autograd w.r.t. the conv outputs and a full unfold."""
    net.eval()
    h, records = x, []
    with torch.enable_grad():
        for stack in net.stacks:
            for layer in stack.layers:
                padded = layer.pad(h)
                a = layer.conv(padded)
                records.append((h.detach(), padded.detach(), a, layer.conv))
                h = layer.drop(layer.probe(layer.act(layer.bn(a))))
            h = stack.drop(stack.pool(h))
        loss = ce(net.head(h).flatten(1)[None], x, y).sum()
        deltas = torch.autograd.grad(loss, [a for _, _, a, _ in records])
    out = []
    for (z, padded, _, conv), delta in zip(records[1:], deltas[1:]):
        cols = F.unfold(padded, conv.kernel_size, padding=conv.padding)  # [B, D, L]
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        d_rows = delta.flatten(2).transpose(1, 2).reshape(-1, delta.shape[1])
        out.append((rows.numpy(), d_rows.numpy(), z.mean((0, 2, 3)).numpy()))
    return out


@pytest.mark.parametrize("convention", ["A", "C"])  # C pads 2x2 convs asymmetrically (ZeroPad2d)
def test_conv_patch_statistics_match_unfold(convention: str) -> None:
    nets = [_convnet(s, batchnorm=True, convention=convention) for s in (0, 1)]
    pop = MemberList(nets)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(6, 2, 8, 8, generator=gen, dtype=torch.float64) + 0.3
    y = torch.randint(0, 3, (6,), generator=gen)
    monitor = TheoryMonitor(pop, 2, eps=1e-3, damping=1e-2, **NO_CAPS)
    out = monitor.measure(x, y, ce)
    assert monitor.num_layers == 2
    for k, net in enumerate(nets):
        for n, (z, delta, mu_in) in enumerate(conv_reference(net, x, y), start=1):
            ref = ref_layer(z, delta, 6, eps=1e-3, damping=1e-2)
            got = {key: value[k].item() for key, value in out.items() if key.endswith(f"/layer{n}")}
            assert got[f"theory/mu_abs_median/layer{n}"] == pytest.approx(np.median(abs(mu_in)))
            assert got[f"theory/mu_abs_mean/layer{n}"] == pytest.approx(np.mean(abs(mu_in)))
            assert got[f"theory/q/layer{n}"] == pytest.approx(ref["q"], rel=1e-9)
            for name in ["q_delta", "ng_cos", "bias_shift_ratio", "bias_shift_per_lr"]:
                want = np.nanmedian(ref[name])
                assert got[f"theory/{name}/layer{n}"] == pytest.approx(want, rel=1e-8), name


def test_conv_member_equals_member_alone_with_subsampling() -> None:
    nets = [_convnet(s) for s in (0, 1, 2)]
    caps = dict(max_rows=50, max_unit_rows=20, max_units=2, max_dim=7)
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (5,))
    together = TheoryMonitor(MemberList(nets), 3, **caps).measure(x, y, ce)
    single = TheoryMonitor(MemberList([copy.deepcopy(nets[2])]), 1, **caps).measure(x, y, ce)
    _assert_same_metrics(together, single, 2)
    assert all(0 <= v < 1 for key, t in together.items() if "/q" in key for v in t.tolist())


# ------------------------------------------------------------------ no effect on training
def _snapshot(pop: nn.Module) -> dict:
    return {
        "params": {n: p.detach().clone() for n, p in pop.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in pop.named_parameters()},
        "buffers": {n: b.clone() for n, b in pop.named_buffers()},
        "modes": [m.training for m in pop.modules()],
        "rng": torch.get_rng_state(),
        "threads": torch.get_num_threads(),
    }


def test_measure_leaves_training_state_alone() -> None:
    pop = MemberList([_convnet(s, batchnorm=True) for s in (0, 1)])
    pop.train()
    pop.members[1].stacks[0].eval()  # modes are restored module by module
    for i, p in enumerate(pop.parameters()):
        if i % 2:
            p.grad = torch.randn_like(p)
    x, y = torch.randn(4, 2, 8, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    before = _snapshot(pop)
    caps = dict(max_rows=30, max_unit_rows=10, max_units=2, max_dim=6)
    TheoryMonitor(pop, 2, **caps).measure(x, y, ce, 0.1)
    after = _snapshot(pop)
    assert torch.equal(before["rng"], after["rng"])
    assert before["modes"] == after["modes"]
    assert before["threads"] == after["threads"]
    for kind in ["params", "grads", "buffers"]:
        for name, value in before[kind].items():
            if value is None:
                assert after[kind][name] is None, name
            else:
                assert torch.equal(value, after[kind][name]), name
    assert not any(m._forward_hooks for m in pop.modules())


def test_measure_is_deterministic() -> None:
    pop = _mlp([6, 9, 8, 3], ["elu"], [0])
    x, y = torch.rand(30, 6, dtype=torch.float64), torch.randint(0, 3, (30,))
    monitor = TheoryMonitor(pop, 1, max_rows=20, max_unit_rows=10, max_units=4, max_dim=5)
    a = monitor.measure(x, y, ce)
    with torch.no_grad():  # the trainer's monitoring methods run under no_grad
        b = monitor.measure(x, y, ce)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True)
    assert not any(m._forward_hooks for m in pop.modules())


# ------------------------------------------------------------------ numbering, tasks, SPP
def test_layer_numbering_matches_activation_monitor() -> None:
    spp = SPPNet(
        activation_factory("relu"),
        conv_stacks=((2, 4, 3),),
        conv1=(3, 3, 1, 1),
        spp_levels=(2, 1),
        fc=(6, 5),
        num_classes=4,
        input_size=12,
    )
    pops = [
        (MemberList([spp]), torch.randn(3, 3, 12, 12), torch.randint(0, 4, (3,))),
        (MemberList([_convnet(0).float()]), torch.randn(3, 2, 8, 8), torch.randint(0, 3, (3,))),
        (StackedMLP([4, 5, 5, 5, 3], [nn.ELU], ["elu"], [0]), torch.rand(3, 4), torch.tensor([0])),
    ]
    for pop, x, y in pops:
        theory = TheoryMonitor(pop, 1)
        assert theory.num_layers == ActivationMonitor(pop, 1).num_layers
        out = theory.measure(x, y, per_example_loss(Classification()))
        layers = {key.rsplit("/layer", 1)[1] for key in out if "/layer" in key}
        assert layers == {str(n) for n in range(1, theory.num_layers + 1)}
        assert torch.isfinite(out["theory/mu_abs_median"]).all()


@pytest.mark.parametrize(
    "task",
    [Classification(), Reconstruction("mean"), Reconstruction("sum")],
    ids=["classification", "reconstruction-mean", "reconstruction-sum"],
)
def test_per_example_loss_averages_to_task_loss(task) -> None:
    x = torch.rand(6, 8)
    out = torch.randn(3, 6, 8)
    y = torch.randint(0, 8, (6,))
    per_example = per_example_loss(task)(out, x, y)
    assert per_example.shape == (3, 6)
    torch.testing.assert_close(per_example.mean(1), task.loss(out, x, y))


def test_autoencoder_population_measures() -> None:
    pop = StackedMLP([8, 6, 3, 6, 8], [nn.ELU, nn.ReLU], ["elu", "relu"], [0, 1])
    x = torch.rand(20, 8)
    out = TheoryMonitor(pop, 2).measure(x, None, per_example_loss(Reconstruction()), [0.1, 0.2])
    assert out["theory/ng_cos/layer3"].shape == (2,)
    assert torch.isfinite(out["theory/q"]).all() and (out["theory/q"] < 1).all()
