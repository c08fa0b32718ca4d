"""What a Slurm partition's nodes offer (from ``sinfo``), and a launcher request fitted to it.

The launcher configs ask for ``auto`` GPUs, tasks, CPUs and time: this module turns them into
numbers the partition can give, so that a sweep submitted to a cluster without GPUs, or with
smaller nodes or a shorter time limit than the configs assume, starts instead of failing in
``sbatch`` or pending for ever. An explicit request no node can satisfy is one line before
anything is submitted.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

from elurepro.errors import ElureproError

AUTO = "auto"
# Without a partition limit, a job asks for this long and is requeued when it is reached.
DEFAULT_TIMEOUT_MIN = 2880


class LaunchError(ElureproError):
    """The cluster cannot run the request, or a submitted job did not finish."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    gpus: int
    memory_mb: int


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: tuple[Node, ...]
    max_time_min: int | None  # None: no limit

    @property
    def largest(self) -> Node:
        """The node with the most GPUs, then CPUs: what ``auto`` sizes a job for."""
        return max(self.nodes, key=lambda n: (n.gpus, n.cpus, n.memory_mb))


def gpu_count(gres: str) -> int:
    """GPUs in a node's GRES string: 'gpu:a100:4(S:0-1),shard:8' -> 4; '(null)' -> 0."""
    total = 0
    for item in gres.split(","):
        fields = re.sub(r"\(.*?\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) > 1 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def minutes(limit: str) -> int | None:
    """A Slurm time limit ('infinite', 'M', 'M:S', 'H:M:S', 'D-H', 'D-H:M', 'D-H:M:S') in whole
    minutes, rounded up; None for no limit."""
    if limit.lower() in ("infinite", "unlimited", "n/a", ""):
        return None
    days, _, clock = limit.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if days:  # after 'D-' come hours[:minutes[:seconds]]
        hours, mins, secs = (parts + [0, 0])[:3]
    elif len(parts) == 3:
        hours, mins, secs = parts
    else:  # minutes[:seconds]
        hours, (mins, secs) = 0, (parts + [0])[:2]
    return (int(days or 0) * 24 + hours) * 60 + mins + (secs > 0)


def parse_sinfo(text: str, wanted: str | None) -> Partition:
    """The partition ``wanted`` (None: the default one, marked '*') from the output of
    ``sinfo -h -N -o '%N|%P|%c|%G|%m|%l'``."""
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    names = sorted({r[1].rstrip("*") for r in rows})
    if wanted is None:
        defaults = sorted({r[1].rstrip("*") for r in rows if r[1].endswith("*")})
        if not defaults:
            raise LaunchError(
                "this cluster has no default partition: name one with "
                f"hydra.launcher.partition=<{'|'.join(names) or 'partition'}>"
            )
        wanted = defaults[0]
    mine = [r for r in rows if r[1].rstrip("*") == wanted]
    if not mine:
        raise LaunchError(
            f"Slurm has no partition {wanted!r} (partitions: {', '.join(names) or 'none'}); "
            "set hydra.launcher.partition to one of them"
        )
    nodes = {
        r[0]: Node(r[0], int(r[2]), gpu_count(r[3]), int(re.sub(r"\D", "", r[4]) or 0))
        for r in mine
    }
    return Partition(wanted, tuple(nodes.values()), minutes(mine[0][5]))


def query_partition(name: str | None) -> Partition:
    """The partition as ``sinfo`` reports it; one line where Slurm cannot be asked."""
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N|%P|%c|%G|%m|%l"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except FileNotFoundError:
        raise LaunchError(
            "sinfo not found: the Slurm launchers run on a machine of the cluster "
            "(sbatch, sinfo and sacct on PATH)"
        ) from None
    except subprocess.CalledProcessError as err:
        raise LaunchError(f"sinfo failed: {err.stderr.strip() or err}") from None
    except subprocess.TimeoutExpired:
        raise LaunchError("sinfo did not answer within 60 s: is slurmctld up?") from None
    return parse_sinfo(out.stdout, name)


def _count(params: dict, key: str, minimum: int) -> int | str | None:
    value = params.get(key)
    if value is None or value == AUTO:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LaunchError(
            f"hydra.launcher.{key}={value!r}: expected {AUTO!r} or an integer >= {minimum}"
        )
    return value


# slurmctld checks time limits every 30 s and sends a job's warning signal once its time left is
# under the signal's lead plus that period, so that the signal is never late.
SLURM_CHECK_S = 30
# A signal before Python has started and submitit has installed its handler kills the job.
STARTUP_S = 30


def _check_signal_lead(timeout_min: int, signal_delay_s: int | None) -> None:
    if not signal_delay_s:
        return
    earliest = timeout_min * 60 - signal_delay_s - SLURM_CHECK_S
    if earliest < STARTUP_S:
        raise LaunchError(
            f"hydra.launcher.signal_delay_s={signal_delay_s} on timeout_min={timeout_min}: Slurm "
            f"may send the requeue signal {max(earliest, 0)} s into the job (it signals once the "
            f"time left is under the lead plus its {SLURM_CHECK_S} s check period), before the "
            "job can catch it; raise timeout_min or lower signal_delay_s to at most "
            f"{timeout_min * 60 - SLURM_CHECK_S - STARTUP_S}"
        )


def fit(params: dict, partition: Partition) -> dict:
    """``params`` with every ``auto`` replaced by what the partition's nodes give, after
    checking that some node can run the request; the partition named explicitly."""
    node = partition.largest
    gpus, tasks = _count(params, "gpus_per_node", 0), _count(params, "tasks_per_node", 1) or 1
    cpus, nodes = _count(params, "cpus_per_task", 1), _count(params, "nodes", 1) or 1
    timeout = _count(params, "timeout_min", 1)
    if gpus == AUTO and (params.get("gpus_per_task") or params.get("gres")):
        gpus = None  # the GPUs are asked for another way
    if tasks == AUTO:  # one task per GPU, as DistributedDataParallel wants
        tasks = (node.gpus or 1) if gpus == AUTO else (gpus or 1)
    if gpus == AUTO:
        gpus = tasks if node.gpus else None  # no GPU request where the nodes have none
    if cpus == AUTO:  # the job's share of a node's CPUs (in proportion to its GPUs), per task
        share = node.cpus * gpus // node.gpus if gpus and node.gpus else node.cpus
        cpus = max(1, share // tasks)
    if timeout == AUTO:
        timeout = min(partition.max_time_min or DEFAULT_TIMEOUT_MIN, DEFAULT_TIMEOUT_MIN)
    where = f"partition {partition.name!r}"
    if nodes > len(partition.nodes):
        raise LaunchError(
            f"hydra.launcher.nodes={nodes} but {where} has {len(partition.nodes)} node(s)"
        )
    mem_mb = (params.get("mem_gb") or 0) * 1024
    fits = [
        n
        for n in partition.nodes
        if (gpus or 0) <= n.gpus and tasks * (cpus or 1) <= n.cpus and mem_mb <= n.memory_mb
    ]
    if len(fits) < nodes:
        asked = f"{tasks} task(s) x {cpus or 1} CPU(s), {gpus or 0} GPU(s)" + (
            f", {params['mem_gb']} GB" if mem_mb else ""
        )
        raise LaunchError(
            f"no node of {where} has {asked} per node (its largest: {node.cpus} CPUs, "
            f"{node.gpus} GPUs, {node.memory_mb // 1024} GB); lower hydra.launcher."
            "tasks_per_node/cpus_per_task/gpus_per_node/mem_gb (or set them to auto), "
            "or choose another hydra.launcher.partition"
        )
    if partition.max_time_min is not None and timeout > partition.max_time_min:
        raise LaunchError(
            f"hydra.launcher.timeout_min={timeout} is above the time limit of {where} "
            f"({partition.max_time_min} min); set it to at most that (or auto): a job that "
            "reaches it is requeued and resumes from its checkpoint"
        )
    _check_signal_lead(timeout, params.get("signal_delay_s"))
    return {
        **params,
        "partition": partition.name,
        "gpus_per_node": gpus,
        "tasks_per_node": tasks,
        "cpus_per_task": cpus,
        "timeout_min": timeout,
    }
