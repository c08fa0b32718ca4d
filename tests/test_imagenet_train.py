"""The ImageNet experiment in the trainer: loader stream, resume, DDP, CLI errors (§5.5, issue #7).

Everything runs a tiny SPP net on a tiny ImageFolder the tests write; the real tiny-imagenet-10
smoke run is in the last test and skips without $ELUREPRO_DATA.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from elurepro import assemble, distributed
from elurepro.activations import activation_factory
from elurepro.data.stream import StepSampler
from elurepro.errors import ConfigError
from elurepro.models.spp import SPPNet
from elurepro.store.sweep import Sweep
from tests.hydra_utils import load_config
from tests.imagenet_files import write_image_folder
from tests.train_utils import member_dir, records, train

RESIZE, CROP = 32, 28
# A narrow net that still has every part of §5.5: conv1, three conv stacks, SPP, two FC layers.
TINY = [
    "model.conv1=[8,3,1,1]",
    "model.conv_stacks=[[1,8,3],[1,8,3]]",
    "model.spp_levels=[2,1]",
    "model.fc=[16,16]",
    "model.fc_dropout=0",
    "budget.width=1.0",
    f"budget.resize={RESIZE}",
    f"budget.crop={CROP}",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("imnet"))


def _args(folder: Path, runs: Path, *overrides: str) -> list[str]:
    return [
        "experiment=imagenet_15layer_spp",
        "budget=smoke",
        f"data.root={folder}",
        f"runs_dir={runs}",
        "progress=false",
        "members.activations=[elu]",
        "train.batch_size=8",
        "data.val_subset=10",
        "data.workers=0",
        *TINY,
        *overrides,
    ]


def _train(cfg, stop_at=None):
    return train(cfg, stop_at=stop_at)


def _records(sweep, member: str = "elu-s0") -> list[dict]:
    return records(sweep, member)


def _checkpoint(sweep) -> Path:
    (path,) = sweep.root.rglob("checkpoint.pt")
    return path


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


# ---------------------------------------------------------------------------- sampler and stream
def test_sampler_batches_are_a_function_of_the_step_and_split_over_ranks() -> None:
    n, batch = 50, 8
    whole = StepSampler(n, batch, seed=3)
    ranks = [StepSampler(n, batch, seed=3, rank=r, world_size=2) for r in range(2)]
    assert whole.steps_per_epoch == 6  # the last 50 % 8 = 2 images of each epoch are left out
    epochs = []
    for epoch in range(3):
        seen = []
        for step in range(epoch * 6, epoch * 6 + 6):
            got = whole.indices(step)
            # Rank r holds the r-th contiguous half of the global batch.
            assert ranks[0].indices(step) + ranks[1].indices(step) == got
            seen += got
        assert len(seen) == len(set(seen)) == 48 and set(seen) <= set(range(n))
        epochs.append(seen)
    assert epochs[0] != epochs[1] != epochs[2]
    assert StepSampler(n, batch, seed=4).indices(0) != whole.indices(0)
    # Iterating from any start gives the (position, epoch) keys of those steps.
    whole.start = 10
    keys = iter(whole)
    for step in (10, 11, 12):
        assert next(keys) == [(i, step // 6) for i in StepSampler(n, batch, 3).indices(step)]


def test_sampler_rejects_a_batch_the_ranks_cannot_share() -> None:
    with pytest.raises(ConfigError, match="divisible by the 3 processes"):
        StepSampler(50, 8, seed=0, rank=0, world_size=3)


def _stream(folder: Path, tmp_path: Path, *overrides: str):
    cfg = load_config(*_args(folder, tmp_path / "runs", *overrides))
    return assemble.build_data(cfg, torch.device("cpu")).stream([0])


def test_loader_batches_ignore_workers_and_restarts(folder: Path, tmp_path: Path) -> None:
    plain = _stream(folder, tmp_path)
    sequential = [plain.batch(s) for s in range(8)]  # crosses the epoch boundary at 6
    assert sequential[0][0].shape == (1, 8, 3, CROP, CROP) and sequential[0][1].shape == (1, 8)
    with_workers = _stream(folder, tmp_path, "data.workers=2")
    for step in (0, 1, 7):  # 7: a jump, as a resumed run makes
        x, y = with_workers.batch(step)
        torch.testing.assert_close(x, sequential[step][0], rtol=0, atol=0)
        assert torch.equal(y, sequential[step][1])
    # Epoch 2 starts with other images (or crops) than epoch 1; every epoch holds every image.
    assert not torch.equal(sequential[6][0], sequential[0][0])
    labels = torch.cat([y[0] for _, y in sequential[:6]])
    assert torch.bincount(labels).tolist() == [8] * 6


# ---------------------------------------------------------------------------- training
def _reference_errors(folder: Path, ckpt: Path, classes: int) -> tuple[float, float]:
    """Top-1 / top-5 error (%) of the checkpoint on all val images, computed without elurepro's
    data code: PIL bilinear resize, numpy mean image, centre crop."""

    def resized(path: Path) -> np.ndarray:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB").resize((RESIZE, RESIZE), Image.BILINEAR))
        return arr.astype(np.float64).transpose(2, 0, 1) / 255.0

    mean = np.mean([resized(p) for p in sorted(folder.glob("train/*/*"))], axis=0)
    files = sorted(folder.glob("val/*/*"))
    o = (RESIZE - CROP) // 2
    x = np.stack([(resized(p) - mean)[:, o : o + CROP, o : o + CROP] for p in files])
    names = sorted(p.name for p in (folder / "train").iterdir())
    y = torch.tensor([names.index(p.parent.name) for p in files])
    net = SPPNet(
        activation_factory("elu"),
        conv_stacks=[(1, 8, 3), (1, 8, 3)],
        conv1=(8, 3, 1, 1),
        spp_levels=(2, 1),
        fc=(16, 16),
        fc_dropout=0.0,
        num_classes=classes,
        input_size=CROP,
    )
    state = torch.load(ckpt, weights_only=False)["model"]
    net.load_state_dict({k.removeprefix("members.0."): v for k, v in state.items()})
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(x).float())
    top = logits.topk(5, dim=1).indices
    top1 = (top[:, 0] != y).double().mean().item() * 100
    top5 = (~(top == y[:, None]).any(dim=1)).double().mean().item() * 100
    return top1, top5


def test_smoke_run_through_hydra_logs_the_fig6_metrics(folder: Path, tmp_path: Path) -> None:
    cfg = load_config(*_args(folder, tmp_path / "runs"))
    run_dir, status = _train(cfg)
    assert status == "finished"
    assert run_dir.root.parent == tmp_path / "runs/imagenet_15layer_spp/imagenet-smoke"
    records = _records(run_dir)
    assert [r["step"] for r in records] == [0, 3, 6, 9, 12, 12]
    assert [r["images"] for r in records] == [0, 24, 48, 72, 96, 96]  # global batch 8
    for r in records[:-1]:
        assert {"val/error", "val/top5_error", "val/loss", "wall_time"} <= set(r)
    assert all("train/loss" in r for r in records[1:-1])
    final = records[-1]
    assert {"val_full/error", "val_full/top5_error"} <= set(final)
    # The logged full-validation errors equal an independent evaluation of the saved weights.
    top1, top5 = _reference_errors(folder, _checkpoint(run_dir), classes=6)
    assert final["val_full/error"] == pytest.approx(top1)
    assert final["val_full/top5_error"] == pytest.approx(top5)
    summary = json.loads((member_dir(run_dir, "elu-s0") / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["data"]["official"] is False and summary["data"]["num_classes"] == 6
    member = json.loads((member_dir(run_dir, "elu-s0") / "member.json").read_text())
    assert member["dataset"] == folder.name and member["experiment"] == "imagenet_15layer_spp"


def test_interrupt_and_rerun_gives_identical_metrics(folder: Path, tmp_path: Path) -> None:
    whole, _ = _train(load_config(*_args(folder, tmp_path / "a")))
    cut, status = _train(load_config(*_args(folder, tmp_path / "b")), stop_at=7)
    assert status == "interrupted"
    # The rest with 2 loader workers: workers are not part of the run, the batches stay the same.
    _, status = _train(load_config(*_args(folder, tmp_path / "b", "data.workers=2")))
    assert status == "finished"
    assert _without_time(_records(cut)) == _without_time(_records(whole))


def test_elu_and_relu_start_from_the_same_draw(folder: Path) -> None:
    """U12: the same weights, ReLU's scaled by the square root of its own gain (U3)."""
    cfg = load_config(*_args(folder, Path("unused"), "members.activations=[elu,relu]"))
    chunks = assemble.plan_chunks(cfg)
    assert [c[0].id for c in chunks] == ["elu-s0", "relu-s0"]
    nets = [assemble.build_population(cfg, c, torch.device("cpu"), num_classes=6) for c in chunks]
    scale = (cfg.model.unit_gains["relu"] / cfg.model.init_gain) ** 0.5
    assert scale > 1
    for (key, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values()):
        expected = a * scale if key.endswith("weight") else a
        torch.testing.assert_close(b, expected, rtol=1e-6, atol=0, msg=key)


def test_too_small_inputs_for_the_paper_net_are_a_config_error() -> None:
    cfg = load_config("experiment=imagenet_15layer_spp", "budget=smoke", "budget.crop=96")
    members = assemble.build_members(cfg)[:1]
    with pytest.raises(ConfigError, match="largest pyramid level needs at least 4x4"):
        assemble.build_population(cfg, members, torch.device("cpu"), num_classes=10)


def test_paper_protocol_in_steps() -> None:
    cfg = load_config("experiment=imagenet_15layer_spp")
    plan = assemble.plan_steps(cfg, steps_per_epoch=10009, lrs=[0.01])
    lr = plan.optim.lr
    assert plan.loop.total_steps == 250000 and cfg.train.batch_size == 128
    assert [lr(0), lr(149999), lr(150000), lr(224999), lr(225000)] == [
        0.01,
        0.01,
        0.001,
        0.001,
        0.0001,
    ]
    assert (plan.loop.log_every, plan.loop.eval_every) == (500, 10000)
    assert (plan.optim.momentum, plan.optim.weight_decay) == (0.9, 5e-4)
    assert assemble.image_sizes(cfg) == (256, 224) and cfg.data.val_subset == 5000
    assert [m.id for m in assemble.build_members(cfg)] == ["elu-s0", "relu-s0"]


# ---------------------------------------------------------------------------- processes
def _cli(args: list[str], cwd: Path, launcher: list[str] | None = None, timeout: float = 300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, *(launcher or []), "-m", "elurepro.train", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ddp_worker(rank: int, world: int, port: int, args: list[str], stops: list) -> None:
    """One rank: train to each of ``stops`` in turn (a checkpoint there, as on Ctrl-C or a
    requeue; None: to the end)."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    torch.set_num_threads(1)
    ctx = distributed.init_distributed("cpu")
    try:
        cfg = load_config(*args)
        (members,) = assemble.plan_chunks(cfg, ctx)
        data = assemble.build_data(cfg, ctx.device, ctx)
        sweep = assemble.make_sweep(cfg, data.info)
        run_dir = sweep.population_dir(members)
        for stop in stops:
            trainer = assemble.build_trainer(cfg, members, data, ctx.device, run_dir, ctx, sweep)
            trainer.run(stop_at=stop)
    finally:
        distributed.shutdown(ctx)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sweep_under(runs: Path) -> Sweep:
    (record,) = runs.rglob("member.json")  # <sweep>/<group>/s<seed>/member.json
    return Sweep(record.parents[2], None)


def _assert_same_run(a_sweep: Sweep, b_sweep: Sweep) -> None:
    a, b = _records(a_sweep), _records(b_sweep)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert set(ra) == set(rb)
        for key, value in ra.items():
            if key != "wall_time":
                assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (ra["step"], key)
    wa = torch.load(_checkpoint(a_sweep), weights_only=False)["model"]
    wb = torch.load(_checkpoint(b_sweep), weights_only=False)["model"]
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # 7 s of the default suite (297-303 s in session 9): two processes spawn
def test_two_ddp_processes_resumed_equal_one_process(folder: Path, tmp_path: Path) -> None:
    """Global batch 8: two gloo processes of 4, stopped mid-interval at step 7 and resumed, give
    the metrics and weights of one uninterrupted process (float tolerance; no dropout here)."""
    one, status = _train(load_config(*_args(folder, tmp_path / "one")))
    assert status == "finished"
    args = _args(folder, tmp_path / "two")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), args, [7, None]), nprocs=2)
    (two,) = (tmp_path / "two").rglob("checkpoint.pt")
    _assert_same_run(one, _sweep_under(tmp_path / "two"))
    initial = _initial_out_weight(folder)
    trained = torch.load(two, weights_only=False)["model"]["members.0.classifier.out.weight"]
    assert not torch.allclose(trained, initial)  # the weights did move


@pytest.mark.slow  # about 25 s here: three interpreters start
def test_two_ddp_processes_equal_one_process(folder: Path, tmp_path: Path) -> None:
    """The commands themselves: one process, and two gloo processes of 4 under torchrun."""
    one = _cli(_args(folder, tmp_path / "one"), tmp_path)
    assert one.returncode == 0, one.stderr
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _cli(_args(folder, tmp_path / "two"), tmp_path, launcher=torchrun)
    assert two.returncode == 0, two.stderr
    assert "2 processes" in two.stdout and two.stdout.count("done:") == 1  # rank 0 speaks
    _assert_same_run(_sweep_under(tmp_path / "one"), _sweep_under(tmp_path / "two"))


def _initial_out_weight(folder: Path) -> torch.Tensor:
    cfg = load_config(*_args(folder, Path("unused")))
    net = assemble.build_population(cfg, assemble.build_members(cfg), torch.device("cpu"), 6)
    return net.state_dict()["members.0.classifier.out.weight"]


def test_empty_class_folder_is_one_clear_line(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "imnet", classes=2, train_per_class=2, val_per_class=1)
    (root / "train" / "n00000009").mkdir()  # other missing-folder cases: test_imagenet_data.py
    proc = _cli(_args(root, tmp_path / "runs"), tmp_path)
    assert proc.returncode == 2
    assert "train/n00000009 holds no images" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # about 40 s on a 2-core CPU
def test_tiny_imagenet_smoke_command(shared_data: Path, tmp_path: Path) -> None:
    """The issue's check: the smoke budget on tiny-imagenet-10, from an empty folder."""
    root = shared_data / "tiny-imagenet-10"
    if not root.is_dir():
        pytest.skip("no tiny-imagenet-10 under $ELUREPRO_DATA")
    args = ["experiment=imagenet_15layer_spp", "budget=smoke", f"data.root={root}"]
    proc = _cli([*args, "progress=false", "members.activations=[relu]"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    final = json.loads(summary.read_text())["final"]
    assert {"val/top5_error", "val_full/error", "train/loss"} <= set(final)
