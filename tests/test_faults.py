"""Fault suite: every failure of ``python -m elurepro.train`` ends in one clear line, and nothing
already written is lost, changed or duplicated.

Every case runs the real command in a subprocess on a narrow MLP (two members, 12 steps, log
points and checkpoints at steps 0, 3, 6, 9 and 12) and compares what it leaves with one
uninterrupted run. Faults at exact moments (kill -9 half-way through writing a checkpoint, two
Ctrl-C during an evaluation, ...) are injected by a ``sitecustomize`` module put on the
subprocess's path, which wraps the trainer's functions; the command itself is unchanged. A full
disk and a read-only runs folder are real file systems (tmpfs and a read-only bind mount in a
private mount namespace, ``unshare -rm``) where the machine allows it; otherwise the full disk is
simulated by a checkpoint write that fails with ENOSPC, and the read-only case uses a folder
without write permission (or is skipped for root).

The subprocess cases are scenarios run two at a time in the background (the machine's 2 cores)
as soon as the module starts; each test waits for its own scenario, whose assertions are its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from elurepro.assemble.validate import validate_config
from elurepro.checkpoint import (
    CorruptCheckpoint,
    file_mode,
    restore_checkpoint,
    save_checkpoint,
    verify_checkpoint,
    write_json,
)
from elurepro.errors import ConfigError
from tests.hydra_utils import experiments, load_config
from tests.mnist_files import write_mnist

REPO = Path(__file__).resolve().parent.parent
ARGS = [
    "experiment=mnist_meanact",
    "budget=smoke",
    "progress=false",
    "data.download=false",
    "model.sizes=[784,32,32,10]",  # what is checked does not depend on the width
    "members.activations=[elu,relu]",
    "budget.max_seeds=1",
]
MEMBERS = ("elu-s0", "relu-s0")

# Put on the subprocess's path as sitecustomize.py: ELUREPRO_FAULT={"what": ..., "n": ...}
# injects one fault at an exact moment of the run.
HOOK = r"""
import errno, json, os, signal, time

_spec = json.loads(os.environ.get("ELUREPRO_FAULT") or "null")
if _spec:
    import elurepro.checkpoint as ck
    import elurepro.trainer.checkpointing as cp
    from elurepro.trainer.evaluation import Evaluator
    from elurepro.trainer.state import LoopState

    _what, _n, _calls = _spec["what"], _spec.get("n", 1), [0]

    def _due():
        _calls[0] += 1
        return _calls[0] == _n

    def _signal(sig):
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # the Python handler has run when the sleep ends

    def _wrap(owner, name, before=None, after=None):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if before is not None:
                before(*args, **kwargs)
            result = original(*args, **kwargs)
            if after is not None:
                after()
            return result

        setattr(owner, name, wrapper)

    def _at_step(fault):
        def before(state, step, *args):
            if step == _n:
                fault()
        return before

    def _half_then(fault):
        def before(f, *args):
            if _due():
                f.write(b"\0" * 4096)  # a part of the checkpoint is on disk
                f.flush()
                fault()
        return before

    def _enospc():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _kill():
        os.kill(os.getpid(), signal.SIGKILL)

    def _twice(*args):
        if _due():
            _signal(signal.SIGINT)
            _signal(signal.SIGINT)

    if _what == "kill_in_training":  # during the training step _n
        _wrap(LoopState, "add_step", before=_at_step(_kill))
    elif _what == "signal_in_training":  # one signal during the training step _n
        _wrap(LoopState, "add_step", before=_at_step(lambda: _signal(_spec["sig"])))
    elif _what == "kill_in_evaluation":  # at the start of the _n-th evaluation
        _wrap(Evaluator, "evaluate", before=lambda *a: _due() and _kill())
    elif _what == "kill_in_checkpoint":  # half-way through writing the _n-th checkpoint
        _wrap(ck, "_write_checkpoint", before=_half_then(_kill))
    elif _what == "kill_after_checkpoint":  # right after the _n-th checkpoint is written
        _wrap(cp, "save_checkpoint", after=lambda: _due() and _kill())
    elif _what == "twice_in_evaluation":  # two Ctrl-C during the _n-th evaluation
        _wrap(Evaluator, "evaluate", before=_twice)
    elif _what == "twice_in_checkpoint":  # two Ctrl-C while the _n-th checkpoint is written
        _wrap(ck, "_write_checkpoint", before=_twice)
    elif _what == "enospc_in_checkpoint":  # the disk fills while the _n-th checkpoint is written
        _wrap(ck, "_write_checkpoint", before=_half_then(_enospc))
    else:
        raise SystemExit(f"unknown fault {_what}")
"""


# ------------------------------------------------------------------ running the command
@dataclass
class Ctx:
    """What a scenario needs: the data, a folder of its own, and the shared runs."""

    data: Path
    cache: Path
    hook: Path
    tmp: Path
    _reference: Future | None = None
    _stopped: Future | None = None

    def env(self, fault: dict | None = None, data: Path | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "ELUREPRO_DATA": str(data or self.data),
            "ELUREPRO_CACHE": str(self.cache),
            "OMP_NUM_THREADS": "1",  # two subprocesses share 2 cores
        }
        env.pop("ELUREPRO_FAULT", None)
        if fault is not None:
            env["ELUREPRO_FAULT"] = json.dumps(fault)
            paths = [str(self.hook), str(REPO), env.get("PYTHONPATH", "")]
            env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def train(
        self, runs: Path, *extra: str, fault: dict | None = None, prefix: list[str] | None = None
    ) -> subprocess.CompletedProcess:
        return _run([*(prefix or []), *_command(runs, *extra)], self.env(fault))

    def reference(self) -> dict[str, list[dict]]:
        """member id -> the records of the uninterrupted run."""
        return _records(self._reference.result())

    def reference_runs(self) -> Path:
        return self._reference.result()

    def stopped(self, copy_to: Path) -> tuple[Path, subprocess.CompletedProcess]:
        """A copy of the run stopped by SIGTERM (see ``_stopped``), and how it ended."""
        runs, done = self._stopped.result()
        shutil.copytree(runs, copy_to)
        return copy_to, done


def _command(runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "elurepro.train", *ARGS, f"runs_dir={runs}", *extra]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _shell(args: list[str]) -> str:
    return " ".join("'" + a.replace("'", "'\\''") + "'" for a in args)


@functools.cache
def _can_mount() -> bool:
    """Whether an unprivileged mount namespace may mount a tmpfs here."""
    if shutil.which("unshare") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix=".elurepro-unshare-probe-"))
    try:
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.rmdir()


def _in_namespace(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return _run(["unshare", "-rm", "sh", "-c", script], env)


# ------------------------------------------------------------------ what a run left
def _one_error_line(stderr: str) -> str:
    """The single 'error:' line of stderr; fails on a traceback or any other kind of line."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    others = [line for line in lines if not line.startswith(("error: ", "warning: "))]
    assert not others, stderr
    return errors[0]


def _no_error_lines(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert all(line.startswith("warning: ") for line in lines), stderr


def _records(runs: Path) -> dict[str, list[dict]]:
    """member id -> its metrics records, without wall times."""
    out = {}
    for info in sorted(runs.rglob("member.json")):
        path = info.parent / "metrics.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        out[json.loads(info.read_text())["id"]] = [
            {k: v for k, v in json.loads(line).items() if k != "wall_time"} for line in lines
        ]
    return out


def _checkpoint(runs: Path) -> Path:
    (path,) = runs.rglob("_populations/*/checkpoint.pt")
    return path


def _snapshot(runs: Path) -> dict[str, str]:
    """Every file under ``runs`` -> its SHA-256."""
    return {
        str(p.relative_to(runs)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(runs.rglob("*"))
        if p.is_file()
    }


def _assert_nothing_lost(runs: Path, reference: dict, checkpoint_step: int) -> None:
    """After a crash: the checkpoint is whole and at ``checkpoint_step``, and every member's
    records are the reference's first records, at least up to that step."""
    assert verify_checkpoint(_checkpoint(runs)).step == checkpoint_step
    records = _records(runs)
    assert sorted(records) == sorted(reference)
    for member, got in records.items():
        assert got == reference[member][: len(got)], member
        assert [r["step"] for r in got if r["step"] <= checkpoint_step] == [
            r["step"] for r in reference[member] if r["step"] <= checkpoint_step
        ], member


def _assert_finished_as_reference(runs: Path, reference: dict) -> None:
    records = _records(runs)
    assert records == reference  # so nothing lost, changed or written twice
    summaries = [json.loads(p.read_text()) for p in runs.rglob("summary.json")]
    assert sorted(s["status"] for s in summaries) == ["finished", "finished"]
    assert not list(runs.rglob("*.tmp")), "a temporary file of a killed write is left over"


# ------------------------------------------------------------------ scenarios in the background
SCENARIOS: dict[str, tuple[Callable[[Ctx], None], tuple[str, ...]]] = {}


def background(*needs: str) -> Callable:
    """Registers ``fn(ctx)`` as a scenario run in the background (``needs``: 'reference',
    'stopped'); the test of the same name waits for it and fails or skips as it did."""

    def register(fn: Callable[[Ctx], None]) -> Callable:
        SCENARIOS[fn.__name__] = (fn, needs)

        def test(scenarios: dict[str, Future]) -> None:
            scenarios[fn.__name__].result(timeout=900)

        test.__name__ = test.__qualname__ = fn.__name__
        test.__doc__ = fn.__doc__
        return test

    return register


def _uninterrupted(ctx: Ctx) -> Path:
    runs = ctx.tmp / "runs"
    done = ctx.train(runs)
    assert done.returncode == 0, done.stderr
    _no_error_lines(done.stderr)
    assert "resuming" not in done.stdout
    records = _records(runs)
    assert sorted(records) == sorted(MEMBERS)
    assert [r["step"] for r in records["elu-s0"]] == [0, 3, 6, 9, 12, 12]
    return runs


def _stopped(ctx: Ctx) -> tuple[Path, subprocess.CompletedProcess]:
    """SIGTERM during step 8: the checkpoint of step 9 (after its log point) is written, the
    one of step 6 kept as checkpoint.prev.pt."""
    runs = ctx.tmp / "runs"
    fault = {"what": "signal_in_training", "sig": int(signal.SIGTERM), "n": 8}
    return runs, ctx.train(runs, fault=fault)


@pytest.fixture(scope="module", autouse=True)
def scenarios(request, mnist_root, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """Starts the selected scenarios when the module starts, two at a time."""
    hook = tmp_path_factory.mktemp("hook")
    (hook / "sitecustomize.py").write_text(HOOK)
    cache = tmp_path_factory.mktemp("cache")

    def ctx(name: str) -> Ctx:
        return Ctx(mnist_root, cache, hook, tmp_path_factory.mktemp(name.removeprefix("test_")))

    selected = [
        item.originalname
        for item in request.session.items
        if item.module is request.module and item.originalname in SCENARIOS
    ]
    needs = {need for name in selected for need in SCENARIOS[name][1]}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scenario")
    # The shared runs first: scenarios waiting for them never wait for a run not yet started.
    shared = {}
    for name, fn in (("reference", _uninterrupted), ("stopped", _stopped)):
        if name in needs:
            shared[name] = pool.submit(fn, ctx(name))
    futures = {}
    for name in selected:
        c = ctx(name)
        c._reference, c._stopped = shared.get("reference"), shared.get("stopped")
        futures[name] = pool.submit(SCENARIOS[name][0], c)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------ configuration
# (override, how the line starts): the cases, and a key Hydra refuses.
BAD_CONFIG = [
    ("train.batch_size=abc", "error: train.batch_size='abc': expected an integer >= 1"),
    ("train.batch_size=0", "error: train.batch_size=0: expected an integer >= 1"),
    ("optim.lr=abc", "error: optim.lr='abc': expected a number > 0"),
    ("budget.max_steps=0", "error: budget.max_steps=0: expected an integer >= 1, or null"),
    ("train.eval_every=0", "error: train.eval_every=0: expected a number > 0"),
    ("train.batchsize=64", "error: train.batchsize: not a key of train (known: unit,"),
]


@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
@background()
def test_bad_config_is_one_line_before_any_data_is_read(ctx: Ctx) -> None:
    """Exit 2, one line naming key, value and what is allowed; nothing read, nothing written
    (the data folder does not exist: reading it would be another error)."""
    runs = ctx.tmp / "runs"
    for override, start in BAD_CONFIG:
        done = _run(_command(runs, override), ctx.env(data=ctx.tmp / "no-data"))
        assert done.returncode == 2, (override, done.stderr)
        assert _one_error_line(done.stderr).startswith(start), (override, done.stderr)
        assert not runs.exists()


@pytest.mark.parametrize(
    "overrides,key",
    [
        (["train.batch_size=1.5"], "train.batch_size=1.5: expected an integer"),
        (["train.unit=epochs"], "train.unit='epochs': expected one of epoch, step"),
        (["+train.batchsize=64"], "train.batchsize: not a key of train (known: unit,"),
        (["+seed=3"], "seed: not a key of the config"),
        (["train.log_every=-1"], "train.log_every=-1:"),
        (["train.act_every=0"], "train.act_every=0:"),
        (["train.eval_batch_size=0"], "train.eval_batch_size=0:"),
        (["train.checkpoint_minutes=0"], "train.checkpoint_minutes=0:"),
        (["train.length=0"], "train.length=0:"),
        (["train.unit=step", "train.length=2.5"], "train.length=2.5: expected a whole number"),
        (["optim.momentum=1.0"], "optim.momentum=1.0: expected a number in [0, 1)"),
        (["optim.weight_decay=-1"], "optim.weight_decay=-1:"),
        (["optim.milestones=[3,2]", "optim.lr_values=[0.1,0.1]"], "optim.milestones=[3, 2]"),
        (["optim.milestones=[3]"], "optim.lr_values=[]: expected one learning rate"),
        (["members.seeds=[0,0]"], "members.seeds=[0, 0]:"),
        (["members.seeds=[-1]"], "members.seeds[0]=-1:"),
        (["members.lrs=[0.1,abc]"], "members.lrs[1]='abc':"),
        (["members.batchnorm=[true]"], "members.batchnorm=[true]: expected [false]"),
        (["members.activations=[elu,swish9]"], "members.activations[1]='swish9': unknown"),
        (["population.max_members=0"], "population.max_members=0:"),
        (["store.heartbeat_s=600"], "store.heartbeat_s=600: expected less than"),
        (["device=gpu"], "device='gpu': expected auto, cpu, cuda"),
        (["progress=yes"], "progress='yes': expected true or false"),
        (["execution.bf16=1"], "execution.bf16=1: expected true or false"),
        (["budget.scale=0"], "budget.scale=0:"),
        (["budget.max_seeds=0"], "budget.max_seeds=0:"),
        (["budget.eval_subset=abc"], "budget.eval_subset='abc':"),
        (["data.val_size=-5"], "data.val_size=-5:"),
        (["data.download=maybe"], "data.download='maybe':"),
        (["model.sizes=[784,32]"], "model.sizes=[784, 32]: expected 784 inputs and 10 outputs"),
        (["model.sizes=[784,abc,10]"], "model.sizes[1]='abc':"),
        (["model.task=regression"], "model.task='regression': expected one of"),
        (["+model.depth=3"], "model (kind mlp, configs/model/):"),
        (["experiment=cifar100_11layer", "model.convention=D"], "model.convention='D':"),
        (["experiment=cifar100_11layer", "model.dropout=[0.1]"], "model.dropout=[0.1]:"),
        (["experiment=cifar100_11layer", "model.stacks=[[1x1y1]]"], "model.stacks[0]="),
        (["experiment=cifar_18layer", "model.convention=V"], "model.stacks: stack 4"),
        (["experiment=imagenet_15layer_spp", "model.fc_dropout=1.0"], "model.fc_dropout=1.0:"),
        (["experiment=imagenet_15layer_spp", "data.crop=300"], "data.crop=300:"),
        (["experiment=mnist_autoencoder", "optim.weight_decay=0.1"], "optim.weight_decay=0.1:"),
        (
            ["experiment=cifar_18layer", "optim.dropout_phases=[{start: 1, rates: [0.1]}]"],
            "optim.dropout_phases[0].rates=[0.1]: expected 8 rates",
        ),
    ],
)
def test_every_key_is_checked_with_its_type(overrides, key):
    cfg = load_config("experiment=mnist_meanact", *overrides)
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    assert str(caught.value).startswith(key), str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bn_member_of_a_model_without_bn_is_the_same_line_from_the_library():
    """The validator and a direct build share one check (scripts build populations directly)."""
    from elurepro.members import expand_members
    from elurepro.models.registry import ModelContext, build_population

    members = expand_members(["elu"], [True], None, [0], 0.01)
    with pytest.raises(ConfigError) as caught:
        build_population("mlp", {}, members, ModelContext(10, None))
    expected = "members.batchnorm=[true]: expected [false]: the mlp model has no BN"
    assert str(caught.value) == expected


@pytest.mark.parametrize("budget", ["paper", "short", "demo", "smoke"])
def test_every_shipped_config_is_valid(budget):
    for experiment in experiments():
        validate_config(load_config(f"experiment={experiment}", f"budget={budget}"))
    for experiment in ("cifar100_11layer", "cifar_18layer"):
        validate_config(load_config(f"experiment={experiment}", "data=cifar10", f"budget={budget}"))


# ------------------------------------------------------------------ files
@background("reference")
def test_every_file_is_readable_by_group_and_others(ctx: Ctx) -> None:
    """Atomic writes end with the mode an ordinary open(..., 'w') gives (umask respected)."""
    expected = file_mode()
    files = [p for p in ctx.reference_runs().rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"checkpoint.pt", "summary.json", "member.json", "provenance.json"} <= names
    assert {"sweep.json", "metrics.jsonl", "checkpoint.prev.pt"} <= names
    for path in files:
        assert path.stat().st_mode & 0o777 == expected, path


def test_atomic_writes_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(tmp_path / "checkpoint.pt", {"step": 1}, step=1)
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    for name in ("a.json", "checkpoint.pt", "plain.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o640, name


# ------------------------------------------------------------------ signals
@background("reference", "stopped")
def test_sigterm_exits_143_and_the_same_command_resumes_to_identical_metrics(ctx: Ctx) -> None:
    runs, done = ctx.stopped(ctx.tmp / "runs")
    reference = ctx.reference()
    assert done.returncode == 143, done.stderr
    _no_error_lines(done.stderr)
    assert "interrupted at step 9" in done.stdout and "Run the same command again" in done.stdout
    _assert_nothing_lost(runs, reference, checkpoint_step=9)

    again = ctx.train(runs)
    assert again.returncode == 0, again.stderr
    _no_error_lines(again.stderr)
    resumed = r"resuming \d+-[0-9a-f]+ \(elu-s0, relu-s0\) from step 9 of 12 \(checkpoint of \d{4}-"
    assert re.search(resumed, again.stdout), again.stdout
    _assert_finished_as_reference(runs, reference)


@pytest.mark.slow  # two training processes, each stopped twice (11 s of the default suite)
@background("reference")
def test_two_ctrl_c_end_cleanly_during_an_evaluation_and_during_a_checkpoint(ctx: Ctx) -> None:
    runs, reference = ctx.tmp / "runs", ctx.reference()
    # The evaluation of step 6 (the third): stops at once, the checkpoint of step 3 is whole.
    done = ctx.train(runs, fault={"what": "twice_in_evaluation", "n": 3})
    assert done.returncode == 130, done.stderr
    _no_error_lines(done.stderr)
    assert "stopped at once by a second SIGINT at step 6; the checkpoint of step 3" in done.stdout
    _assert_nothing_lost(runs, reference, checkpoint_step=3)

    # Resumed, then two Ctrl-C while the checkpoint of step 6 is written: it is finished first.
    done = ctx.train(runs, fault={"what": "twice_in_checkpoint", "n": 1})
    assert done.returncode == 130, done.stderr
    _no_error_lines(done.stderr)
    assert "stopped at once by a second SIGINT at step 6; the checkpoint of step 6" in done.stdout
    _assert_nothing_lost(runs, reference, checkpoint_step=6)

    again = ctx.train(runs)
    assert again.returncode == 0, again.stderr
    _assert_finished_as_reference(runs, reference)


@pytest.mark.slow  # kills a training process at many moments (15 s of the default suite)
@background("reference")
def test_kill_9_at_any_moment_loses_nothing(ctx: Ctx) -> None:
    """kill -9 right after the first checkpoint, during training, half-way through writing a
    checkpoint and during an evaluation; each time the same command continues."""
    runs, reference = ctx.tmp / "runs", ctx.reference()
    moments = [
        ({"what": "kill_after_checkpoint", "n": 1}, 0),  # the checkpoint of step 0
        ({"what": "kill_in_training", "n": 4}, 3),  # step 4, after the checkpoint of step 3
        ({"what": "kill_in_checkpoint", "n": 1}, 3),  # writing the checkpoint of step 6
        ({"what": "kill_in_evaluation", "n": 2}, 6),  # the evaluation of step 9
    ]
    for fault, step in moments:
        done = ctx.train(runs, fault=fault)
        assert done.returncode == -signal.SIGKILL, (fault, done.stderr)
        _assert_nothing_lost(runs, reference, checkpoint_step=step)
        if fault["what"] == "kill_in_checkpoint":
            assert list(runs.rglob(".checkpoint.pt.*.tmp")), "the write was not cut"
    again = ctx.train(runs)
    assert again.returncode == 0, again.stderr
    _assert_finished_as_reference(runs, reference)


# ------------------------------------------------------------------ checkpoints
@background("reference", "stopped")
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(ctx: Ctx) -> None:
    """The checkpoint of step 9 cut to half its size: one warning line, the run continues from
    the previous checkpoint (step 6), and the records of step 9, written before the damage,
    are neither lost nor doubled."""
    runs, _ = ctx.stopped(ctx.tmp / "runs")
    path = _checkpoint(runs)
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    done = ctx.train(runs)
    assert done.returncode == 0, done.stderr
    _no_error_lines(done.stderr)
    (line,) = [x for x in done.stderr.splitlines() if "checkpoint.pt is unusable" in x]
    assert f"{path} is unusable" in line
    assert "continuing from the previous checkpoint checkpoint.prev.pt (step 6)" in line
    assert "from step 6 of 12" in done.stdout
    _assert_finished_as_reference(runs, ctx.reference())
    assert verify_checkpoint(path).step == 12


@background("stopped")
def test_no_usable_checkpoint_is_one_line_and_changes_nothing(ctx: Ctx) -> None:
    runs, _ = ctx.stopped(ctx.tmp / "runs")
    path = _checkpoint(runs)
    path.write_bytes(b"")
    prev = path.with_name("checkpoint.prev.pt")
    data = bytearray(prev.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: same size, wrong checksum
    prev.write_bytes(bytes(data))
    before = _snapshot(runs)
    done = ctx.train(runs)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert f"{path} is unusable: it is empty" in line
    assert f"{prev} is unusable: its checksum does not match" in line
    assert f"Delete {path.parent} to train this population again" in line
    assert _snapshot(runs) == before


@pytest.mark.parametrize("damage", ["half", "empty", "flipped byte", "appended", "not torch"])
def test_every_damage_is_detected_and_the_previous_checkpoint_used(damage, tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 3, "w": torch.arange(1000.0)}, step=3)
    save_checkpoint(path, {"step": 6, "w": torch.arange(1000.0) * 2}, step=6)
    assert torch.load(path, weights_only=False)["step"] == 6  # still a plain torch file
    data = path.read_bytes()
    damaged = {
        "half": data[: len(data) // 2],
        "empty": b"",
        "flipped byte": data[:100] + bytes([data[100] ^ 1]) + data[101:],
        "appended": data + b"\0" * 10,
        "not torch": b"hello" * 100,
    }[damage]
    path.write_bytes(damaged)
    with pytest.raises(CorruptCheckpoint):
        verify_checkpoint(path)
    restored = restore_checkpoint(path)
    assert restored.state["step"] == 3 and restored.info.step == 3
    assert restored.skipped and restored.skipped[0][0] == path


def test_a_checkpoint_from_before_seals_still_loads(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": 5}, path)  # the format of earlier versions: no seal
    assert not verify_checkpoint(path).sealed
    assert restore_checkpoint(path).state["step"] == 5


# ------------------------------------------------------------------ the operating system
@pytest.mark.slow  # out of the default suite, which stays under 5 min (README, Development)
@background("reference")
def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(ctx: Ctx) -> None:
    out = ctx.tmp / "out"
    out.mkdir()
    if _can_mount():
        # Room for the first checkpoint and the small files, not for a second checkpoint.
        size = int(_checkpoint(ctx.reference_runs()).stat().st_size * 1.5) + (64 << 10)
        disk = ctx.tmp / "small-disk"
        disk.mkdir()
        script = (
            f"mount -t tmpfs -o size={size} tmpfs {disk} || exit 99; "
            f"{_shell(_command(disk / 'runs'))}; code=$?; cp -a {disk}/runs {out}/runs; exit $code"
        )
        done = _in_namespace(script, ctx.env())
        assert done.returncode != 99, done.stderr
    else:  # simulated: the second checkpoint's write fails with ENOSPC half-way
        done = ctx.train(out / "runs", fault={"what": "enospc_in_checkpoint", "n": 2})
    runs, reference = out / "runs", ctx.reference()
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert "checkpoint.pt: No space left on device [ENOSPC]" in line
    assert line.endswith("(the checkpoint already there is intact)")
    _assert_nothing_lost(runs, reference, checkpoint_step=0)
    assert not list(runs.rglob("*.tmp"))

    again = ctx.train(runs)
    assert again.returncode == 0, again.stderr
    _assert_finished_as_reference(runs, reference)


@background("stopped")
def test_a_read_only_runs_folder_is_one_line_before_the_data_is_read(ctx: Ctx) -> None:
    runs, _ = ctx.stopped(ctx.tmp / "runs")
    before = _snapshot(runs)
    if _can_mount():
        script = (
            f"mount --bind {runs} {runs} && mount -o remount,bind,ro {runs} || exit 99; "
            f"exec {_shell(_command(runs))}"
        )
        done = _in_namespace(script, ctx.env())
        assert done.returncode != 99, done.stderr
        reason = "Read-only file system [EROFS]"
    elif os.geteuid() != 0:
        for folder in [runs, *(p for p in runs.rglob("*") if p.is_dir())]:
            folder.chmod(0o555)
        done = ctx.train(runs)
        reason = "Permission denied [EACCES]"
    else:
        pytest.skip("no mount namespace here, and root writes into read-only folders")
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert line.startswith(f"error: cannot write to the runs folder {runs}/mnist_meanact: ")
    assert reason in line
    assert "MNIST-format" not in done.stdout + done.stderr  # the data was not read
    assert _snapshot(runs) == before


@background()
def test_a_folder_of_someone_else_is_one_line(ctx: Ctx) -> None:
    """Permission denied: the runs folder belongs to another user (as root: run as nobody)."""
    shared = None
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("no setpriv to run as another user")
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # The other user needs a way in to the folder, not a right to write there.
        shared = Path(f"/tmp/elurepro-faults-{os.getpid()}")
        shared.mkdir(mode=0o755)
        runs = shared / "runs"
        runs.mkdir(mode=0o755)
    else:
        prefix, runs = [], ctx.tmp / "runs"
        runs.mkdir(mode=0o555)
    try:
        # What the command itself imports (hydra, torch, ...), not only the package: a venv
        # that the other user cannot read must skip this test, not fail it.
        probe = _run([*prefix, sys.executable, "-c", "import elurepro.train"], ctx.env())
        if probe.returncode != 0:
            pytest.skip("the other user cannot run this Python")
        done = ctx.train(runs, prefix=prefix)
    finally:
        if shared is not None:
            shutil.rmtree(shared)
    assert done.returncode == 1, done.stderr
    line = _one_error_line(done.stderr)
    assert f"cannot write to the runs folder {runs}/mnist_meanact: Permission denied" in line


@background()
def test_a_runs_folder_that_is_a_file_is_one_line(ctx: Ctx) -> None:
    blocker = ctx.tmp / "runs"
    blocker.write_text("not a folder")
    done = ctx.train(blocker / "inner")
    assert done.returncode == 1, done.stderr
    assert f"{blocker} is a file, not a folder" in _one_error_line(done.stderr)
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------ data
@background()
def test_labels_out_of_range_are_one_line(ctx: Ctx) -> None:
    """A label byte of 200 (the file's size still valid) is named before training starts."""
    bad = write_mnist(ctx.tmp / "bad", n_train=600, n_test=100)
    labels = bad / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[8 + 17] = 200  # after the 8-byte header: the label of image 17
    labels.write_bytes(bytes(data))
    done = _run(_command(ctx.tmp / "runs"), ctx.env(data=bad))
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert f"{labels}: label 200 at position 17 is outside 0..9" in line
    assert not list((ctx.tmp / "runs").rglob("member.json"))


@background()
def test_a_missing_data_set_is_one_line_without_the_download_text(ctx: Ctx) -> None:
    """No data and no network: our line (folder, files, how to supply them), none of
    torchvision's own download messages."""
    none = ctx.tmp / "none"
    offline = {
        **ctx.env(data=none),
        # Every download attempt is refused at once (a proxy on a closed port).
        **{k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY")},
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
        "NO_PROXY": "",
    }
    done = _run(_command(ctx.tmp / "runs", "data.download=true"), offline)
    assert done.returncode == 2, done.stderr
    line = _one_error_line(done.stderr)
    assert line.startswith("error: MNIST not found (download failed: ")
    assert f"Searched {none}/MNIST/raw for: train-images-idx3-ubyte" in line
    assert "ELUREPRO_DATA=<folder>" in line
    assert "Tried" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"MNIST is not in {none}/MNIST/raw: downloading it there"]


# ------------------------------------------------------------------ divergence
@background()
def test_a_diverged_member_is_recorded_and_the_other_goes_on(ctx: Ctx) -> None:
    runs = ctx.tmp / "runs"
    done = ctx.train(runs, "members.activations=[elu]", "members.lrs=[0.01,100000.0]")
    assert done.returncode == 0, done.stderr
    _no_error_lines(done.stderr)
    assert "member elu-lr100000-s0 diverged (non-finite loss) at iteration" in done.stdout
    summaries = {}
    for path in runs.rglob("summary.json"):
        summary = json.loads(path.read_text())
        summaries[summary["member"]["id"]] = summary
    bad, good = summaries["elu-lr100000-s0"], summaries["elu-lr0.01-s0"]
    assert bad["status"] == "diverged" and isinstance(bad["diverged_at_step"], int)
    assert good["status"] == "finished" and good["steps"] == 12
    assert len(_records(runs)["elu-lr0.01-s0"]) == 6  # every log point of the other member
