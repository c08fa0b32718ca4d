"""A run killed hard (or stopped by a signal) and started again ends as if never interrupted:
the MNIST command, and every net with dropout (both CIFAR nets, the SPP net, 2 DDP processes)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from elurepro.checkpoint import load_checkpoint, save_checkpoint
from elurepro.runlog import running_sessions
from elurepro.trainer.recorder import Recorder
from tests.cifar_files import write_cifar10
from tests.hydra_utils import load_config
from tests.imagenet_files import write_image_folder
from tests.test_imagenet_train import _ddp_worker, _free_port
from tests.train_utils import member_dir, mnist_smoke, records, summary, train

ARGS = [
    "experiment=mnist_meanact",
    "budget=smoke",
    "budget.max_steps=400",
    "progress=false",
    "members.activations=[elu,relu]",
    "budget.max_seeds=1",
]


def _command(runs: Path) -> list[str]:
    return [sys.executable, "-m", "elurepro.train", *ARGS, f"runs_dir={runs}"]


def _metrics(runs: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted(runs.rglob("metrics.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines()]
        out[path.parent.name] = [{k: v for k, v in r.items() if k != "wall_time"} for r in records]
    return out


def _wait_for_checkpoint_after_start(runs: Path, proc: subprocess.Popen, timeout: float = 240):
    """Until the first checkpoint after step 0 exists (the record of step 100 is logged)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in runs.rglob("metrics.jsonl"):
            if '"step": 100,' in path.read_text():
                return
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("no checkpoint within the time limit")


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
@pytest.mark.parametrize(
    "sig",
    [signal.SIGKILL, signal.SIGINT],
    ids=["kill-9", "ctrl-c"],
)
def test_interrupted_run_continues_to_identical_metrics(sig, mnist_root, tmp_path):
    env = {**os.environ, "ELUREPRO_DATA": str(mnist_root)}
    whole = tmp_path / "whole"
    done = subprocess.run(_command(whole), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr

    cut = tmp_path / "cut"
    proc = subprocess.Popen(
        _command(cut), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_checkpoint_after_start(cut, proc)
    time.sleep(0.2)  # let it run past the checkpoint, so that work is lost and redone
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert not list(cut.rglob("summary.json")), "the run finished before the interruption"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Run the same command again" in out

    again = subprocess.run(_command(cut), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert len(list(cut.rglob("summary.json"))) == 2
    assert _metrics(cut) == _metrics(whole)


def test_a_summary_after_a_resume_has_the_values_logged_before_it(mnist_root, tmp_path):
    """A member that diverges after a resume: its summary's final values include those last
    logged before the stop (the evaluation of step 0), as in an uninterrupted run. The loop
    carries them in its checkpoint; a checkpoint of an earlier version, without them, has them
    read back from the member's metrics.jsonl."""
    args = [
        "members.activations=[relu]",
        "members.lrs=[0.01,10.0]",
        "members.seeds=[0]",
        "budget.max_steps=40",
        "train.unit=step",
        "train.length=40",
        "train.log_every=1",
        "train.eval_every=20",  # at steps 0, 10, ...: the member diverges before step 10
        "train.act_every=20",
    ]
    member = "relu-lr10-s0"
    whole, _ = train(mnist_smoke(mnist_root, tmp_path / "whole", *args))
    expected = summary(whole, member)
    assert 2 < expected["diverged_at_step"] < 10 and "val/loss" in expected["final"]
    for name in ("cut", "earlier-version"):
        cfg = mnist_smoke(mnist_root, tmp_path / name, *args)
        cut, status = train(cfg, stop_at=2)
        assert status == "interrupted"
        if name == "earlier-version":
            (path,) = cut.root.rglob("checkpoint.pt")
            state = load_checkpoint(path)
            del state["final"]
            save_checkpoint(path, state, step=2)
        _, status = train(cfg)
        assert status == "finished"
        got = summary(cut, member)
        assert json.dumps(got["final"]) == json.dumps(expected["final"]), name
        assert got["diverged_at_step"] == expected["diverged_at_step"], name


def test_a_resumed_member_shows_as_running_until_it_ends(mnist_root, tmp_path, monkeypatch):
    """TensorBoard's HParams tab: Running again while a resumed member trains, its result after."""
    cfg = mnist_smoke(mnist_root, tmp_path, "members.activations=[elu]", "budget.max_seeds=1")
    cut, status = train(cfg, stop_at=2)
    assert status == "interrupted"
    folder = member_dir(cut, "elu-s0")
    assert not running_sessions(folder)  # the stopped worker took its session with it
    seen = []
    log_point = Recorder.log_point

    def watched(self, state, *args, **kwargs):
        seen.append(len(running_sessions(folder)))
        return log_point(self, state, *args, **kwargs)

    monkeypatch.setattr(Recorder, "log_point", watched)
    _, status = train(cfg)
    assert status == "finished" and seen and all(n == 1 for n in seen), seen
    assert not running_sessions(folder) and summary(cut, "elu-s0")["status"] == "finished"


# ------------------------------------------------------------------ nets with dropout
# Each net at a tiny size with its dropout on, stopped mid-run and continued (in-process, as the
# command does after a signal): the metrics and weights of an uninterrupted run, bit for bit. The
# dropout masks come from torch's global RNG, saved in the checkpoint; nothing else may draw from
# it between the checkpoint and the next step (a DataLoader iterator draws its workers' seed).
CIFAR = [
    "data=cifar10",
    "budget=smoke",
    "progress=false",
    "members.activations=[elu]",
    "budget.max_seeds=1",
    "model.convention=A",
]
CIFAR_NETS = {
    # 3 stacks of the 11-layer net's kind, BN on: its running statistics are resumed too.
    "cifar100_11layer": [
        "model.stacks=[[1x8x3],[1x8x1,1x12x2],[1x10x1]]",
        "model.dropout=[0.3,0.5,0.0]",
        "members.batchnorm=[true]",
    ],
    # 3 stacks with the Table 1 schedule's dropout phase on every layer from step 7 (of 12): the
    # run stops after it began, so the resumed run must set the phase's rates again.
    "cifar_18layer": [
        "model.stacks=[[1x8x3],[1x8x1,2x12x2],[1x10x1]]",
        "model.dropout=[0.3,0.5,0.0]",
        "optim.dropout_phases=[{start:115000,rates:[0.2,0.6,0.0],all_layers:true}]",
    ],
}
SPP = [
    "experiment=imagenet_15layer_spp",
    "budget=smoke",
    "progress=false",
    "members.activations=[elu]",
    "train.batch_size=8",
    "data.val_subset=10",
    "data.workers=0",
    "model.conv1=[8,3,1,1]",
    "model.conv_stacks=[[1,8,3],[1,8,3]]",
    "model.spp_levels=[2,1]",
    "model.fc=[16,16]",
    "model.fc_dropout=0.5",
    "budget.width=1.0",
    "budget.resize=32",
    "budget.crop=28",
]


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time"} for r in records]


def _weights(sweep) -> dict:
    (path,) = sweep.root.rglob("checkpoint.pt")
    return torch.load(path, weights_only=False)["model"]


def _assert_resumed_exactly(args: list[str], runs: Path, stop_at: int, member: str) -> None:
    whole, status = train(load_config(*args, f"runs_dir={runs / 'whole'}"))
    assert status == "finished"
    cut, status = train(load_config(*args, f"runs_dir={runs / 'cut'}"), stop_at=stop_at)
    assert status == "interrupted"
    _, status = train(load_config(*args, f"runs_dir={runs / 'cut'}"))
    assert status == "finished"
    assert _without_time(records(cut, member)) == _without_time(records(whole, member))
    a, b = _weights(whole), _weights(cut)
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> list[str]:
    """Tiny CIFAR-10 files and one cache for the module: its whitening is computed once."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root / "data")
    return [f"data.root={root / 'data'}", f"cache_dir={root / 'cache'}"]


@pytest.mark.slow  # about 15 s each on an idle 2-core CPU, more with the first whitening
@pytest.mark.parametrize(
    ("experiment", "member"), [("cifar100_11layer", "elu+bn-s0"), ("cifar_18layer", "elu-s0")]
)
def test_cifar_nets_with_dropout_resume_exactly(experiment, member, cifar, tmp_path):
    args = [f"experiment={experiment}", *CIFAR, *cifar, *CIFAR_NETS[experiment]]
    with pytest.warns(UserWarning, match="md5"):
        _assert_resumed_exactly(args, tmp_path, stop_at=8, member=member)


def test_spp_net_with_dropout_resumes_exactly(tmp_path):
    folder = write_image_folder(tmp_path / "imnet")
    _assert_resumed_exactly([*SPP, f"data.root={folder}"], tmp_path, stop_at=7, member="elu-s0")


@pytest.mark.slow  # about 30 s: two 2-process jobs
def test_two_ddp_processes_with_dropout_resume_exactly(tmp_path):
    """Each rank draws its own dropout masks (from seed, step and rank): a job stopped at step 7
    and started again ends exactly as the uninterrupted job."""
    folder = write_image_folder(tmp_path / "imnet")
    outcome = []
    for name, stops in (("whole", [None]), ("cut", [7, None])):
        runs = tmp_path / name
        args = [*SPP, f"data.root={folder}", f"runs_dir={runs}"]
        torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), args, stops), nprocs=2)
        (metrics,) = runs.rglob("metrics.jsonl")
        summary = json.loads((metrics.parent / "summary.json").read_text())
        assert summary["processes"] == 2
        (ckpt,) = runs.rglob("checkpoint.pt")
        outcome.append(
            (
                _without_time([json.loads(x) for x in metrics.read_text().splitlines()]),
                torch.load(ckpt, weights_only=False)["model"],
            )
        )
    (whole, a), (cut, b) = outcome
    assert cut == whole
    assert all(torch.equal(a[key], b[key]) for key in a)
