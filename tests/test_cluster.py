"""The Slurm launchers against a real single-node Slurm cluster (scripts/local_slurm.sh).

``make test-cluster`` runs the tests marked ``cluster``: array sweeps, cancellation, time limits,
DistributedDataParallel and failures go through slurmctld, slurmd and accounting, and every
result is compared with the same sweep run locally. They start the cluster themselves (and stop
it after, unless it was already up) and are skipped, with the reason, where it cannot be started.
The tests without the mark (what the launcher makes of a partition) run in the default suite.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from elurepro.launch.partition import LaunchError, Node, Partition, fit, minutes, parse_sinfo
from tests.conftest import REPO
from tests.imagenet_files import write_image_folder
from tests.test_imagenet_train import _args as imagenet_args
from tests.test_imagenet_train import _assert_same_run, _cli, _sweep_under
from tests.test_store import _command, _members

SCRIPT = REPO / "scripts" / "local_slurm.sh"
# 6 members (3 units x 2 seeds) in 3 populations of 2; a population trains for a few seconds.
SWEEP = ["budget.max_steps=1000", "population.max_members=2"]
ONE_CPU = "hydra.launcher.cpus_per_task=1"  # two array jobs at once on the 2-CPU test node


# ---------------------------------------------------------------------------- fitting (no cluster)
SINFO = "gpu1|gpu*|64|gpu:a100:8(S:0-1)|512000|2-00:00:00\ncpu1|cpu|32|(null)|128000|infinite\n"


def test_sinfo_is_read_per_partition() -> None:
    gpu = parse_sinfo(SINFO, None)  # the default partition
    assert gpu == Partition("gpu", (Node("gpu1", 64, 8, 512000),), 2880)
    assert parse_sinfo(SINFO, "cpu").nodes == (Node("cpu1", 32, 0, 128000),)
    with pytest.raises(LaunchError, match="no partition 'big' .partitions: cpu, gpu"):
        parse_sinfo(SINFO, "big")


@pytest.mark.parametrize(
    "limit,want", [("infinite", None), ("30:00", 30), ("1:00:00", 60), ("1-12", 2160), ("0:30", 1)]
)
def test_slurm_time_limits_in_minutes(limit: str, want) -> None:
    assert minutes(limit) == want


AUTO = {"nodes": 1, "gpus_per_node": "auto", "cpus_per_task": "auto", "timeout_min": "auto"}


@pytest.mark.parametrize(
    "partition,tasks,want",
    [
        ("gpu", 1, (8, 1, 1, 2880)),  # an array job: one GPU and its share of the CPUs
        ("gpu", "auto", (8, 8, 8, 2880)),  # DDP: every GPU of a node, one task each
        ("cpu", 1, (32, None, 1, 2880)),  # no GPU request where the nodes have none
        ("cpu", 2, (16, None, 2, 2880)),
    ],
)
def test_auto_fits_the_partition(partition: str, tasks, want) -> None:
    fitted = fit({**AUTO, "tasks_per_node": tasks}, parse_sinfo(SINFO, partition))
    got = ("cpus_per_task", "gpus_per_node", "tasks_per_node", "timeout_min")
    assert tuple(fitted[k] for k in got) == want and fitted["partition"] == partition


@pytest.mark.parametrize("timeout,lead,ok", [(2, 60, True), (1, 50, False), (2, 61, False)])
def test_a_requeue_signal_that_could_come_at_the_jobs_start_is_refused(timeout, lead, ok) -> None:
    """Slurm may signal as early as the time limit less the lead less its 30 s check period."""
    params = {**AUTO, "tasks_per_node": 1, "timeout_min": timeout, "signal_delay_s": lead}
    if ok:
        assert fit(params, parse_sinfo(SINFO, "cpu"))["signal_delay_s"] == lead
    else:
        with pytest.raises(LaunchError, match="raise timeout_min or lower signal_delay_s"):
            fit(params, parse_sinfo(SINFO, "cpu"))


@pytest.mark.parametrize(
    "override,words",
    [
        ({"gpus_per_node": 1, "tasks_per_node": 1}, "1 GPU"),
        ({"cpus_per_task": 33, "tasks_per_node": 1}, "33 CPU"),
        ({"nodes": 2, "tasks_per_node": 1}, "has 1 node"),
        ({"timeout_min": 3000, "tasks_per_node": 1}, "above the time limit"),
        ({"cpus_per_task": "many", "tasks_per_node": 1}, "expected 'auto' or an integer"),
    ],
)
def test_a_request_no_node_can_run_is_one_line(override: dict, words: str) -> None:
    cpu = parse_sinfo(SINFO.replace("infinite", "2-00:00:00"), "cpu")
    with pytest.raises(LaunchError, match=words) as err:
        fit({**AUTO, **override}, cpu)
    assert "\n" not in str(err.value)


def test_hydra_finds_the_launchers() -> None:
    from hydra.core.plugins import Plugins

    found = Plugins.instance().class_name_to_class
    assert {
        "hydra_plugins.elurepro_launcher.SlurmLauncher",
        "hydra_plugins.elurepro_launcher.LocalLauncher",
    } <= set(found)


# A job whose training has returned, signalled to requeue while its interpreter shuts down (Python
# then restores the signal's default action, terminate): with the launcher's training it exits 0.
_SIGNAL_AT_SHUTDOWN = """
import os, signal, sys
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
import hydra_plugins.elurepro_launcher as launchers

submitit_launcher.BaseSubmititLauncher.__call__ = lambda self: "trained"  # the training
signal.signal(signal.SIGUSR2, lambda *_: print("requeued"))  # submitit's handler in a job

class SignalAtShutdown:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGUSR2)

late = SignalAtShutdown()  # deleted as the interpreter's modules are torn down
if sys.argv[1] != "none":
    print(getattr(launchers, sys.argv[1])()())
"""


@pytest.mark.parametrize("launcher", ["SlurmLauncher", "LocalLauncher", "none"])
def test_a_job_whose_training_returned_ignores_a_late_requeue_signal(launcher: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SUBMITIT_PREEMPT_SIGNAL"}
    proc = subprocess.run(
        [sys.executable, "-c", _SIGNAL_AT_SHUTDOWN, launcher],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )
    if launcher == "none":  # what killed a finished job on CI: Slurm recorded it FAILED
        assert proc.returncode == -signal.SIGUSR2, (proc.returncode, proc.stderr)
    else:
        assert (proc.returncode, proc.stdout) == (0, "trained\n"), proc.stderr


# ---------------------------------------------------------------------------- the cluster
@pytest.fixture(scope="module")
def slurm_conf() -> str:
    """The SLURM_CONF of a running cluster: one already up, else one started for these tests
    (and stopped after them)."""
    proc = subprocess.run(["bash", str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        reasons = [x for x in proc.stderr.splitlines() if x.startswith("local_slurm:")]
        pytest.skip((reasons or proc.stderr.strip().splitlines() or ["no reason given"])[-1])
    yield re.search(r"export SLURM_CONF=(\S+)", proc.stdout).group(1)
    if "already up" not in proc.stdout:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=120)


@pytest.fixture
def slurm(slurm_conf: str) -> dict[str, str]:
    """The environment of commands on the cluster (sbatch passes it on to the jobs)."""
    # Several jobs share the node's cores: one thread each, or OpenMP's threads fight.
    return {**os.environ, "SLURM_CONF": slurm_conf, "OMP_NUM_THREADS": "1"}


def _on_slurm(launcher: str, *extra: str) -> list[str]:
    """The arguments that end a training command to send it to Slurm (Hydra's multirun)."""
    return [f"hydra/launcher={launcher}", *extra, "--multirun"]


def _start(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(command, cwd=cwd, env=env, **pipes)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return _finish(_start(command, env, cwd))


def _job_logs(runs: Path, suffix: str = "out") -> dict[str, str]:
    """Slurm job id -> what its first task wrote (submitit's <job>_0_log.<suffix>)."""
    logs = sorted(runs.glob(f"multirun/*/.submitit/*/*_0_log.{suffix}"))
    return {p.parent.name: p.read_text() for p in logs}


def _sacct(env: dict[str, str], job_id: str, fields: str) -> list[str]:
    """Accounting's record of a job (of its last run when it was requeued): Slurm's word, not
    the launcher's."""
    return _sacct_runs(env, job_id, fields)[-1]


def _sacct_runs(env: dict[str, str], job_id: str, fields: str) -> list[list[str]]:
    """The record of each run of a job, requeued ones included."""
    command = ["sacct", "-n", "-P", "-X", "--duplicates", "-j", job_id, "-o", fields]
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return [line.split("|") for line in out.stdout.strip().splitlines()]


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory, mnist_root: Path) -> dict[str, dict]:
    """SWEEP trained by one local command: what every Slurm run of it must equal."""
    runs = tmp_path_factory.mktemp("local")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = _run(_command(runs, mnist_root, *SWEEP), env, runs)
    assert proc.returncode == 0, proc.stderr
    return _members(runs)


def _assert_equal_to(local: dict[str, dict], runs: Path) -> None:
    members = _members(runs)
    assert sorted(members) == sorted(local)
    for member_id, m in members.items():
        assert m["summary"] and m["records"] == local[member_id]["records"], member_id


def _array_sweep(runs: Path, data: Path, workers: int) -> list[str]:
    """SWEEP as a Slurm array of ``workers`` jobs, two of them running at once."""
    array = _on_slurm("slurm_array", f"worker=range({workers})", ONE_CPU)
    return [*_command(runs, data, *SWEEP), *array]


@pytest.mark.cluster
def test_array_sweep_trains_each_member_once_and_equals_a_local_run(
    slurm, mnist_root: Path, tmp_path: Path, local_sweep
) -> None:
    runs = tmp_path / "runs"
    args = _array_sweep(runs, mnist_root, workers=3)
    proc = _run(args, slurm, tmp_path)
    assert proc.returncode == 0, proc.stderr
    logs = _job_logs(runs)
    assert len(logs) == 3 and all("Job completed successfully" in x for x in logs.values())
    started = [x for log in logs.values() for x in re.findall(r"^training (.*) \(", log, re.M)]
    trained = [member for names in started for member in names.split(", ")]
    assert sorted(trained) == sorted(local_sweep)  # every member by exactly one array job
    _assert_equal_to(local_sweep, runs)
    assert all(m["events"] == 1 for m in _members(runs).values())  # none was started twice
    # What the user typed is what the members record, not submitit's command in the job.
    typed = shlex.join(["python", "-m", "elurepro.train", *args[3:]])  # args[:3]: python -m ...
    for folder in (m["folder"] for m in _members(runs).values()):
        assert json.loads((folder / "summary.json").read_text())["command"] == typed
        assert json.loads((folder / "provenance.json").read_text())["command"] == typed


def _cancel_mid_member(env: dict[str, str], runs: Path, submitting: subprocess.Popen) -> str:
    """Cancel the array job training a population that has a checkpoint and is not finished;
    its job id."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and submitting.poll() is None:
        for ckpt in runs.glob("mnist_meanact/*/*/_populations/*/checkpoint.pt"):
            for job_id, log in _job_logs(runs).items():
                started = re.findall(r"^training .* in (\S+)$", log, re.M)
                if started and started[-1] == ckpt.parent.name and "done:" not in log:
                    subprocess.run(["scancel", job_id], check=True, env=env)
                    return job_id
        time.sleep(0.05)
    raise AssertionError("no array job was seen mid-member")


@pytest.mark.cluster
def test_a_cancelled_array_job_is_one_line_and_the_same_command_finishes_the_sweep(
    slurm, mnist_root: Path, tmp_path: Path, local_sweep
) -> None:
    runs = tmp_path / "runs"
    args = _array_sweep(runs, mnist_root, workers=2)
    first = _start(args, slurm, tmp_path)
    cancelled = _cancel_mid_member(slurm, runs, first)
    stopped = _finish(first)
    assert stopped.returncode == 143, stopped.stderr  # stopped: the same command continues
    line = _one_error_line(stopped)
    assert f"Slurm job {cancelled} (worker=" in line and "was cancelled" in line
    assert _sacct(slurm, cancelled, "State")[0].startswith("CANCELLED")
    again = _run(args, slurm, tmp_path)
    assert again.returncode == 0, again.stderr
    _assert_equal_to(local_sweep, runs)
    # The cancelled member went on from its checkpoint (in the other job or in a new one).
    after = "".join(log for job, log in _job_logs(runs).items() if job != cancelled)
    assert re.search(r"^resuming \S+ \(.*\) from step [1-9]", after, re.M), after


def _steps_taking(seconds: float, local: dict[str, dict]) -> int:
    """Steps a population of two trains in ``seconds`` on this machine (from the local sweep)."""
    records = [
        json.loads(x) for m in local.values() for x in (m["folder"] / "metrics.jsonl").open()
    ]
    rate = max(r["step"] / r["wall_time"] for r in records if r.get("wall_time"))
    return int(rate * seconds / 100 + 1) * 100


@pytest.mark.cluster
def test_an_array_job_at_its_time_limit_is_requeued_and_resumes(
    slurm, mnist_root: Path, tmp_path: Path, local_sweep
) -> None:
    """A two-minute limit and the requeue signal asked for 60 s before it. Slurm checks time
    limits every 30 s and signals a job once its time left is under the signal's lead plus that
    period (so that the signal is never late), here between 30 s and 60 s into the job: never
    while Python is still starting and submitit has no handler yet (a lead of 50 s on a one-minute
    limit signalled at the first check, and a USR2 then kills the job). submitit requeues the job,
    and the requeued job resumes from the last checkpoint (one every 3 s here). The population
    trains for about 120 s at the rate measured in the local sweep (the job may run up to twice
    as fast if the sweep ran under other load, and still outlasts the signal); ``budget.scale``
    lengthens the schedule so that the smoke subset's 300 MNIST epochs do not end it first. A
    local run of it is the reference."""
    pair = [
        f"budget.max_steps={_steps_taking(120, local_sweep)}",
        "budget.scale=1000",
        "budget.max_seeds=1",
        "members.activations=[elu,relu]",
        "train.checkpoint_minutes=0.05",
    ]
    local = _start(_command(tmp_path / "local", mnist_root, *pair), slurm, tmp_path)
    runs = tmp_path / "runs"
    limit = _on_slurm(
        "slurm_array",
        "worker=0",
        ONE_CPU,
        "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.max_num_timeout=20",
    )
    proc = _run([*_command(runs, mnist_root, *pair), *limit], slurm, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _finish(local).returncode == 0
    ((job_id, log),) = _job_logs(runs).items()
    runs_of_job = [state for (state,) in _sacct_runs(slurm, job_id, "State")]
    assert runs_of_job[-1] == "COMPLETED" and "REQUEUED" in runs_of_job[:-1], runs_of_job
    assert re.search(r"^resuming \S+ \(elu-s0, relu-s0\) from step [1-9]", log, re.M), log
    _assert_equal_to(_members(tmp_path / "local"), runs)


@pytest.mark.cluster
def test_ddp_job_of_two_tasks_equals_torchrun(slurm, tmp_path: Path) -> None:
    """The ImageNet SPP net at smoke budget as one 2-task Slurm job (gloo on CPU) against the
    2-process torchrun run of the same command."""
    folder = write_image_folder(tmp_path / "imnet")
    two_tasks = _on_slurm("slurm", "hydra.launcher.tasks_per_node=2")
    train = [sys.executable, "-m", "elurepro.train"]
    job = _start([*train, *imagenet_args(folder, tmp_path / "slurm"), *two_tasks], slurm, tmp_path)
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _cli(imagenet_args(folder, tmp_path / "torchrun"), tmp_path, launcher=torchrun)
    assert two.returncode == 0, two.stderr
    submitted = _finish(job)
    assert submitted.returncode == 0, submitted.stderr
    # auto: no GPU on this node, and its CPUs shared between the two tasks
    assert "1 node(s) x 2 task(s) x 1 CPU(s), no GPU" in submitted.stdout
    (log,) = _job_logs(tmp_path / "slurm").values()
    assert "2 processes" in log
    _assert_same_run(_sweep_under(tmp_path / "torchrun"), _sweep_under(tmp_path / "slurm"))


@pytest.mark.cluster
def test_a_failing_worker_sets_the_exit_status_and_defaults_fit_the_node(
    slurm, mnist_root: Path, tmp_path: Path
) -> None:
    """A bad value is found in the job (the config is validated where it runs): its line and
    exit status reach the submitting command. The job was sized by the launcher's defaults alone:
    all CPUs of the GPU-less node, no GPU request, the partition's time limit."""
    runs = tmp_path / "runs"
    bad = [*_command(runs, mnist_root, "train.batch_size=0"), *_on_slurm("slurm_array")]
    proc = _run(bad, slurm, tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "ended FAILED: train.batch_size=0: expected an integer >= 1" in line
    ((job_id, _),) = _job_logs(runs, "err").items()
    sinfo = subprocess.run(
        ["sinfo", "-h", "-o", "%c %l"], capture_output=True, text=True, env=slurm
    )
    cpus, limit = sinfo.stdout.split()
    alloc, tres, timelimit = _sacct(slurm, job_id, "AllocCPUS,ReqTRES,Timelimit")
    assert alloc == cpus and "gres/gpu" not in tres and timelimit == limit.zfill(8)


@pytest.mark.cluster
def test_requests_the_cluster_cannot_run_end_in_one_line(
    slurm, mnist_root: Path, tmp_path: Path
) -> None:
    """Before submitting: more CPUs than a node has. After: a job pending for a reason that never
    clears (a dependency on a failed job) is cancelled and named, instead of a wait for ever."""
    runs = tmp_path / "runs"
    args = _command(runs, mnist_root, "members.activations=[elu]", "budget.max_seeds=1")
    too_big = _on_slurm("slurm_array", "hydra.launcher.cpus_per_task=999")
    refused = _run([*args, *too_big], slurm, tmp_path)
    assert refused.returncode == 2 and "no node of partition" in _one_error_line(refused)
    assert not list(runs.rglob(".submitit"))  # nothing was submitted

    failing = ["sbatch", "--parsable", "--output=/dev/null", "--wrap=false"]
    failed = subprocess.run(failing, capture_output=True, text=True, check=True, env=slurm)
    never = f"+hydra.launcher.additional_parameters.dependency=afterok:{failed.stdout.strip()}"
    proc = _run([*args, *_on_slurm("slurm_array", never)], slurm, tmp_path)
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "can never start: DependencyNeverSatisfied" in line
    job_id = re.search(r"Slurm job (\S+) ", line).group(1)
    assert _sacct(slurm, job_id, "State")[0].startswith("CANCELLED")
