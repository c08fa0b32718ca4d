"""One run over several processes with torch.distributed: torchrun, or Slurm / submitit tasks.

One process per GPU (backend NCCL, device cuda:LOCAL_RANK) or several CPU processes (gloo).
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT itself; tasks started by
submitit (Slurm or local) or by a plain multi-task ``srun`` get them from ``torch_env_from_tasks``.
Host-side decisions that every rank must take together (stop on a signal, checkpoint now) go
through a gloo group, so agreeing on them never waits for the GPU.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from elurepro.errors import ConfigError

# A fixed range for the rendezvous port, derived from the job id so that every task agrees.
_PORT_BASE, _PORT_SPAN = 20000, 20000


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    control: dist.ProcessGroup  # gloo: host-side flags and barriers

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def first_host(nodelist: str) -> str:
    """The first host name of a Slurm node list: 'gpu[003-004,7],cpu1' -> 'gpu003'."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not match:
        raise ConfigError(f"cannot read a host name from the Slurm node list {nodelist!r}")
    prefix, ranges = match.groups()
    if not ranges:
        return prefix
    return prefix + re.split(r"[,-]", ranges)[0]


def torch_env_from_tasks(environ: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's env:// variables for one of several tasks started by submitit or srun.

    Empty when torchrun already set them (RANK present), or with a single task. A Slurm job step
    (srun, which submitit uses) is recognised by SLURM_STEP_NUM_TASKS, so a single process in an
    allocation of several tasks (an sbatch script, salloc) is not mistaken for a rank.
    """
    if "RANK" in environ:
        return {}
    if environ.get("SUBMITIT_EXECUTOR") == "local":
        world = int(environ.get("SUBMITIT_LOCAL_NTASKS", "1"))
        rank = environ.get("SUBMITIT_LOCAL_GLOBALID", "0")
        local = environ.get("SUBMITIT_LOCAL_LOCALID", rank)
        nodes, host, job = 1, "127.0.0.1", environ.get("SUBMITIT_LOCAL_JOB_ID", "0")
    elif "SLURM_STEP_NUM_TASKS" in environ and "SLURM_PROCID" in environ:
        world = int(environ["SLURM_STEP_NUM_TASKS"])
        rank, local = environ["SLURM_PROCID"], environ.get("SLURM_LOCALID", "0")
        nodes = int(environ.get("SLURM_STEP_NUM_NODES", environ.get("SLURM_JOB_NUM_NODES", "1")))
        nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
        host = first_host(nodelist) if nodelist else "127.0.0.1"
        job = environ.get("SLURM_JOB_ID", "0")
    else:
        return {}
    if world <= 1:
        return {}
    digits = re.sub(r"\D", "", job) or "0"
    return {
        "RANK": rank,
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": local,
        "LOCAL_WORLD_SIZE": str(max(1, world // max(1, nodes))),
        "MASTER_ADDR": environ.get("MASTER_ADDR", host),
        "MASTER_PORT": environ.get("MASTER_PORT", str(_PORT_BASE + int(digits) % _PORT_SPAN)),
    }


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name not in ("auto", "cuda"):
        raise ConfigError(
            f"device={name} under torch.distributed: use device=auto or cuda (each process takes "
            "cuda:LOCAL_RANK) or cpu"
        )
    count = torch.cuda.device_count()
    if count == 0:
        raise ConfigError("device=cuda was asked for but CUDA is not available; use device=cpu")
    if count == 1:  # one GPU visible per task (e.g. Slurm binds them)
        return torch.device("cuda", 0)
    if local_rank >= count:
        raise ConfigError(
            f"local rank {local_rank} but only {count} GPUs are visible: start one process per GPU"
        )
    return torch.device("cuda", local_rank)


def init_distributed(device_name: str) -> DistContext | None:
    """Join the process group when this process is one of several; None for a single process."""
    for key, value in torch_env_from_tasks(os.environ).items():
        os.environ.setdefault(key, value)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_name, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
        control = dist.new_group(backend="gloo")
    else:
        dist.init_process_group("gloo")
        control = dist.group.WORLD
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return DistContext(rank, world, local, local_world, device, control)


def shutdown(ctx: DistContext | None) -> None:
    if ctx is not None and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext | None) -> None:
    if ctx is not None:
        dist.barrier(group=ctx.control)


def any_rank(ctx: DistContext | None, *flags: bool) -> tuple[bool, ...]:
    """Each flag true on any rank (one host-side all-reduce); the flags as given without DDP."""
    if ctx is None:
        return flags
    values = torch.tensor([int(f) for f in flags], dtype=torch.int32)
    dist.all_reduce(values, op=dist.ReduceOp.MAX, group=ctx.control)
    return tuple(bool(v) for v in values.tolist())


def broadcast(ctx: DistContext | None, obj: object) -> object:
    """Rank 0's ``obj`` on every rank (pickled over the host-side group); ``obj`` without DDP."""
    if ctx is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=ctx.control)
    return box[0]


def sum_over_ranks(ctx: DistContext | None, tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks (in place on the device); the tensor itself without DDP."""
    if ctx is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def min_over_ranks(ctx: DistContext | None, tensor: torch.Tensor) -> torch.Tensor:
    if ctx is not None:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


@contextlib.contextmanager
def main_first(ctx: DistContext | None) -> Iterator[None]:
    """Rank 0 runs the block first (say, to fill a cache); the other ranks run it after.

    Rank 0 releases the others even when the block fails: they then fail on their own, with the
    same clear error, instead of waiting for a barrier that never comes.
    """
    if ctx is not None and not ctx.is_main:
        barrier(ctx)
    try:
        yield
    finally:
        if ctx is not None and ctx.is_main:
            barrier(ctx)
