"""Fast paths equal the plain ones: the fused StackedMLP step, per-seed input batches, the stacked
CNN population (grouped convolutions) against the same members alone, per-member dropout masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elurepro.activations import activation_factory
from elurepro.data.stream import Split, TensorStream
from elurepro.models.convnet import StackConvNet
from elurepro.models.fused import input_runs
from elurepro.models.mlp import StackedMLP
from elurepro.models.population import MemberList
from elurepro.models.stacked_cnn import StackedConvNets, dropout_seed
from elurepro.monitor import ActivationMonitor
from elurepro.trainer.optimizer import sgd

# Activation-major, seeds innermost (the suite's order): 4 units x 3 seeds.
UNITS = ["elu", "lrelu", "relu", "srelu"]
KEYS = [u for u in UNITS for _ in range(3)]
SEEDS = [0, 1, 2] * 4
GROUPS = [0, 1, 2] * 4  # TensorStream's group of each member: the rank of its seed
TIGHT = {"rtol": 1e-6, "atol": 1e-7}


def _mlp(sizes=(20, 16, 16, 7), keys=KEYS, seeds=SEEDS) -> StackedMLP:
    return StackedMLP(list(sizes), [activation_factory(k) for k in keys], keys, seeds)


def _grads(pop: StackedMLP, x: torch.Tensor, groups=None, fused: bool = True):
    pop.fused = fused
    pop.zero_grad(set_to_none=True)
    out = pop(x, groups)
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)
    (out * weights).sum().backward()
    return out.detach(), [p.grad.clone() for p in pop.parameters()]


@pytest.mark.parametrize("form", ["members", "expanded", "shared", "groups"])
def test_fused_mlp_step_equals_plain_modules(form):
    pop = _mlp()
    xg = torch.randn(3, 5, 20) * 2  # wide enough that every unit sees both signs
    x, groups = {
        "members": (xg[GROUPS], None),
        "expanded": (xg[0].expand(12, 5, 20), None),
        "shared": (xg[0], None),
        "groups": (xg, GROUPS),
    }[form]
    fused_out, fused_grads = _grads(pop, x, groups, fused=True)
    assert pop(x, groups).grad_fn.name() == "FusedStackBackward"
    plain_out, plain_grads = _grads(pop, x, groups, fused=False)
    torch.testing.assert_close(fused_out, plain_out, **TIGHT)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, **TIGHT)


def test_fused_mlp_falls_back_where_it_would_differ():
    pop = _mlp()
    x = torch.randn(12, 4, 20)
    assert pop(x).grad_fn.name() == "FusedStackBackward"
    handle = pop.net[2].register_forward_hook(lambda *a: None)  # a monitor watching a probe
    assert pop(x).grad_fn.name() != "FusedStackBackward"
    handle.remove()
    with torch.no_grad():
        assert pop(x).grad_fn is None
    assert pop(x.requires_grad_()).grad_fn.name() != "FusedStackBackward"  # input gradient
    gelu = _mlp(keys=["gelu"] * 2, seeds=[0, 1])  # no kernel pair: plain modules
    assert gelu(torch.randn(2, 4, 20)).grad_fn.name() != "FusedStackBackward"


def test_input_runs_cover_the_suite_orders():
    assert [(r.start, r.end, r.group, r.repeat) for r in input_runs(GROUPS)] == [
        (0, 3, 0, False),
        (3, 6, 0, False),
        (6, 9, 0, False),
        (9, 12, 0, False),
    ]
    assert [(r.start, r.end, r.repeat) for r in input_runs([0] * 16)] == [(0, 16, True)]
    odd = [2, 0, 0, 1, 1, 1]
    runs = input_runs(odd)
    assert [
        g
        for r in runs
        for g in (
            [r.group] * (r.end - r.start) if r.repeat else range(r.group, r.group + r.end - r.start)
        )
    ] == odd


def test_gradients_accumulate_without_zero_grad():
    pop, plain = _mlp(), _mlp()
    plain.fused = False
    x = torch.randn(12, 4, 20)
    for step in range(3):  # .grad is held between backward passes: buffers are not reused
        for model in (pop, plain):
            model((step + 1) * x).square().sum().backward()
    for p, q in zip(pop.parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, **TIGHT)


def test_reused_buffers_keep_held_gradients_intact():
    pop = _mlp()
    x = torch.randn(12, 4, 20)
    pop(x).square().sum().backward()
    held = [p.grad for p in pop.parameters()]
    snapshot = [g.clone() for g in held]
    pop.zero_grad(set_to_none=True)  # the model lets go; `held` still refers to the tensors
    pop(-x).square().sum().backward()
    for g, s in zip(held, snapshot):
        assert torch.equal(g, s)
    assert all(p.grad.data_ptr() != g.data_ptr() for p, g in zip(pop.parameters(), held))
    del held, g
    weights = [p for name, p in pop.named_parameters() if name.endswith("weight")]
    first = [w.grad.data_ptr() for w in weights]
    pop.zero_grad(set_to_none=True)
    pop(x).square().sum().backward()
    assert [w.grad.data_ptr() for w in weights] == first  # nobody holds them now: reused


def test_fused_training_equals_plain_training():
    """Ten SGD steps on per-seed batches: the fused path keeps every member where the plain
    modules take it (float tolerance; both see the same batches)."""
    data = Split(torch.rand(96, 20), torch.randint(0, 7, (96,)))
    stream = TensorStream(data, 8, SEEDS)
    models = {"plain": _mlp(), "fused": _mlp()}
    models["plain"].fused = False
    for name, pop in models.items():
        opt = sgd(pop, 0.5, 0.0)
        for g in opt.param_groups:
            g["lr"] = 0.05
        for step in range(10):
            if name == "fused":
                xg, yg = stream.batch_groups(step)
                out = pop(xg, stream.member_groups)
                y = stream.to_members(yg)
            else:
                x, y = stream.batch(step)
                out = pop(x)
            loss = F.cross_entropy(out.flatten(0, 1), y.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p, q in zip(models["fused"].parameters(), models["plain"].parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_stream_groups_and_single_seed_views():
    data = Split(torch.rand(40, 6), torch.arange(40))
    stream = TensorStream(data, 8, [5, 3, 5, 3, 9])
    assert stream.member_groups == [1, 0, 1, 0, 2]
    xg, yg = stream.batch_groups(3)
    x, y = stream.batch(3)
    assert xg.shape == (3, 8, 6) and torch.equal(x, xg[[1, 0, 1, 0, 2]])
    assert torch.equal(y, yg[[1, 0, 1, 0, 2]])
    one = TensorStream(data, 8, [4, 4, 4])
    x1, y1 = one.batch(2)
    assert x1.shape == (3, 8, 6) and x1.stride(0) == 0 and y1.stride(0) == 0  # no copy
    assert torch.equal(x1[2], one.batch_groups(2)[0][0])


# ---------------------------------------------------------------------------- CNNs
STACKS = [["1x8x3"], ["1x8x1", "1x10x2"], ["1x6x2"], ["1x5x1"]]
DROPOUT = [0.0, 0.3, 0.2, 0.0]
# (unit, BN, seed): BN alternates as in a seed-major sweep chunk; two units repeat.
CNN_MEMBERS = [("elu", True, 3), ("relu", False, 1), ("elu", False, 2), ("lrelu", True, 3)]


def _cnn(unit: str, bn: bool, seed: int, convention: str = "A") -> StackConvNet:
    torch.manual_seed(seed)
    return StackConvNet(
        STACKS, 3, 9, activation_factory(unit), DROPOUT, convention=convention, batchnorm=bn
    )


@pytest.mark.parametrize("convention", ["A", "C"])
def test_stacked_cnn_member_equals_member_alone(convention):
    """Three SGD steps (momentum, weight decay, dropout, then a phase with dropout after every
    layer), channels-last: each stacked member's outputs and weights equal the member's own."""
    alone = [_cnn(*m, convention) for m in CNN_MEMBERS]
    pop = StackedConvNets([_cnn(*m, convention) for m in CNN_MEMBERS], [m[2] for m in CNN_MEMBERS])
    pop.use_channels_last()
    gens = [torch.Generator() for _ in alone]
    for net, gen in zip(alone, gens):
        net.to(memory_format=torch.channels_last)
        net.use_dropout_generator(gen)
    optims = [sgd(m, 0.9, 5e-4) for m in [*alone, pop]]
    for opt in optims:
        for group in opt.param_groups:
            group["lr"] = 0.05
    k = len(alone)
    for step in range(3):
        if step == 2:
            for net in [*alone, pop]:
                net.set_dropout([0.1, 0.3, 0.3, 0.0], all_layers=True)
        x, y = torch.randn(k, 6, 3, 9, 9), torch.randint(0, 5, (k, 6))
        pop.seed_dropout(step)
        outs = []
        for m, (net, gen, opt) in enumerate(zip(alone, gens, optims)):
            gen.manual_seed(dropout_seed(CNN_MEMBERS[m][2], step))
            out = net(x[m])
            outs.append(out.detach())
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(out, y[m]).backward()
            opt.step()
        out = pop(x)
        torch.testing.assert_close(out.detach(), torch.stack(outs), rtol=1e-4, atol=1e-5)
        losses = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        optims[-1].zero_grad(set_to_none=True)
        losses.view(k, 6).mean(1).sum().backward()
        optims[-1].step()
    for m, net in enumerate(alone):
        mine, theirs = pop.member_state_dict(m), net.state_dict()
        assert mine.keys() == theirs.keys()
        for key in theirs:
            torch.testing.assert_close(mine[key], theirs[key], rtol=1e-4, atol=1e-6, msg=key)


def test_stacked_cnn_inputs_orders_and_monitor():
    """Shared, expanded, per-seed and per-member inputs agree; the reordered fast path equals
    the plain order; the activation monitor reads the same per-member values as MemberList."""
    nets = [_cnn(*m) for m in CNN_MEMBERS]
    pop = StackedConvNets([_cnn(*m) for m in CNN_MEMBERS], [0] * len(nets)).eval()
    listed = MemberList(nets).eval()
    xs = torch.randn(5, 3, 9, 9)
    ref = listed.forward_shared(xs)
    torch.testing.assert_close(pop.forward_shared(xs), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pop(xs.expand(4, *xs.shape)), ref, rtol=1e-5, atol=1e-6)
    xg = torch.randn(2, 5, 3, 9, 9)
    groups = [1, 0, 1, 0]
    torch.testing.assert_close(pop(xg, groups), listed(xg[groups]), rtol=1e-5, atol=1e-6)
    results = []
    for population in (pop, listed):
        monitor = ActivationMonitor(population, len(nets))
        results.append(monitor.measure(lambda p=population: p.forward_shared(xs)))
    assert results[0].keys() == results[1].keys()
    for key in results[1]:
        torch.testing.assert_close(results[0][key], results[1][key], rtol=1e-5, atol=1e-6)
    # Training mode (BN on batch statistics, which it then updates): fast order = plain order.
    pop.train()
    pop.set_dropout([0.0] * 4, all_layers=False)  # BN in training mode, no dropout
    x = torch.randn(4, 5, 3, 9, 9)
    grads = []
    for fast in (True, False):
        pop.fast = fast
        pop.zero_grad(set_to_none=True)
        out = pop(x)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in pop.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(grads[0][1], grads[1][1]):  # sums of many terms: absolute slack
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dropout_generator_gives_reproducible_masks():
    net = _cnn("elu", False, 0).train()
    x = torch.randn(4, 3, 9, 9)
    gen = torch.Generator()
    net.use_dropout_generator(gen)
    outs = []
    for seed in (7, 7, 8):
        gen.manual_seed(seed)
        outs.append(net(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    net.use_dropout_generator(None)  # the global RNG again
    torch.manual_seed(1)
    a = net(x)
    torch.manual_seed(1)
    assert torch.equal(a, net(x))


def test_stacked_cnn_refuses_mixed_architectures():
    other = StackConvNet([["1x8x3"], ["1x5x1"]], 3, 9, nn.ELU, [0.0, 0.0])
    with pytest.raises(Exception, match="one architecture"):
        StackedConvNets([_cnn("elu", False, 0), other], [0, 1])
