"""From a resolved Hydra config to plain objects: members, data, sweep, population, trainer.

This package is the only code that reads the config tree; everything it calls takes plain
values. ``data`` assembles the splits, ``steps`` turns lengths and schedules into steps, and the
functions here put members, the run store and the trainer together.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from elurepro.assemble.data import DataBundle, build_data, image_sizes, loader_workers
from elurepro.assemble.steps import StepPlan, plan_steps
from elurepro.data.stream import TensorStream
from elurepro.distributed import DistContext
from elurepro.errors import ConfigError
from elurepro.members import MemberSpec, chunk, expand_members
from elurepro.models.population import Population
from elurepro.models.registry import ModelContext, builder_params
from elurepro.models.registry import build_population as _registry_population
from elurepro.runlog import device_name, git_commit
from elurepro.store.claims import Claims
from elurepro.store.identity import SweepIdentity, config_key
from elurepro.store.sweep import Sweep
from elurepro.tasks import build_task
from elurepro.trainer import ExecConfig, Outputs, Trainer, TrainingData
from elurepro.trainer.recorder import no_fence

__all__ = [
    "DataBundle",
    "StepPlan",
    "build_data",
    "build_members",
    "build_population",
    "build_trainer",
    "image_sizes",
    "loader_workers",
    "make_sweep",
    "pick_device",
    "plan_chunks",
    "plan_steps",
]


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return device


def build_members(cfg: DictConfig) -> list[MemberSpec]:
    m = cfg.members
    seeds = list(m.seeds)
    if cfg.budget.max_seeds is not None:
        seeds = seeds[: cfg.budget.max_seeds]
    activations = OmegaConf.to_container(m.activations, resolve=True)
    lrs = None if m.lrs is None else list(m.lrs)
    return expand_members(activations, list(m.batchnorm), lrs, seeds, float(cfg.optim.lr))


def plan_chunks(cfg: DictConfig, dist: DistContext | None = None) -> list[list[MemberSpec]]:
    """The populations a command trains, in order: a function of the members asked for, so every
    worker started with the same command plans the same populations."""
    members = build_members(cfg)
    if cfg.population.max_members:
        # Seed-major order: an interrupted sweep has whole pairs done, not whole activations.
        members = sorted(members, key=lambda m: m.seed)
    chunks = chunk(members, cfg.population.max_members)
    if dist is not None and max(len(c) for c in chunks) > 1:
        raise ConfigError(
            f"under torch.distributed (WORLD_SIZE={dist.world_size}) a population has one "
            f"member, got {max(len(c) for c in chunks)}; set population.max_members=1"
        )
    return chunks


def make_sweep(cfg: DictConfig, data_info: dict[str, Any]) -> Sweep:
    """The sweep folder of this config on this data (see ``elurepro/store/identity.py``)."""
    identity = SweepIdentity(
        experiment=cfg.name,
        data_name=cfg.data.name,  # the config's data set; the fingerprint tells which files
        budget=cfg.budget.name,
        fingerprint=str(data_info["fingerprint"]),
        config=config_key(OmegaConf.to_container(cfg, resolve=True)),
    )
    return Sweep.at(cfg.runs_dir, identity)


def build_population(
    cfg: DictConfig,
    members: Sequence[MemberSpec],
    device: torch.device,
    num_classes: int | None = None,
    input_size: int | None = None,
) -> Population:
    if input_size is None and "crop" in cfg.data:  # images cropped by the loader (ImageNet)
        input_size = image_sizes(cfg)[1]
    model = OmegaConf.to_container(cfg.model, resolve=True)
    kind, params = model["kind"], builder_params(model)
    ctx = ModelContext(num_classes, input_size, float(cfg.budget.get("width", 1.0)))
    return _registry_population(kind, params, members, ctx).to(device)


def build_trainer(
    cfg: DictConfig,
    members: Sequence[MemberSpec],
    data: DataBundle,
    device: torch.device,
    run_dir: Path,
    dist: DistContext | None = None,
    sweep: Sweep | None = None,
    claims: Claims | None = None,
    done: Sequence[bool] | None = None,
    command: str | None = None,
) -> Trainer:
    """A trainer for one population. With a ``sweep``, members live in the sweep's folders and
    the checkpoint in its population folder ``run_dir``; without, everything goes under
    ``run_dir`` (``members/<id>/``: benchmarks and tests). ``command``: the command line that
    started the run, for provenance.json, summaries and TensorBoard's text."""
    b = cfg.budget
    seeds = [m.seed for m in members]
    if data.stream is not None:
        stream = data.stream(seeds)
    else:
        stream = TensorStream(data.train, cfg.train.batch_size, seeds, data.augment)
    lrs = [m.lr for m in members]
    plan = plan_steps(cfg, stream.steps_per_epoch, lrs)
    population = build_population(
        cfg, members, device, data.info.get("num_classes"), data.input_size
    )
    config = OmegaConf.to_container(cfg, resolve=True)
    provenance = {
        "device": device_name(device),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "data": data.info,
        "budget": b.name,
        "total_steps": plan.loop.total_steps,
        "eval_images": {name: len(split) for name, split in data.final_splits.items()},
        "config": config,
        # How the numbers were computed, beyond the folder's identity: these change the last
        # digits of a member's results (README, "What differs between runs") but not its folder.
        "population": [m.id for m in members],
        "threads": torch.get_num_threads(),
        "processes": dist.world_size if dist is not None else 1,
    }
    if command is not None:
        provenance["command"] = command
    extra = {
        "experiment": cfg.name,
        "dataset": data.info["name"],
        "budget": b.name,
        "data": data.info,
    }
    if sweep is not None:
        member_dirs = [sweep.member_dir(m) for m in members]
        records = [
            m.record(**extra, key=sweep.member_key(m), sweep=sweep.identity.key) for m in members
        ]
    else:
        member_dirs = [Path(run_dir) / "members" / m.id for m in members]
        records = [m.record(**extra) for m in members]
    model = cfg.model
    monitor = data.monitor if cfg.train.act_every is not None else None
    return Trainer(
        population=population,
        task=build_task(
            model.task,
            top5=bool(model.get("top5", False)),
            pixel_reduction=model.get("pixel_reduction", "mean"),
        ),
        data=TrainingData(
            stream=stream,
            eval_splits=data.eval_splits,
            final_splits=data.final_splits,
            monitor=monitor,
            theory_images=cfg.monitor.theory_images if cfg.monitor.theory else None,
        ),
        loop=plan.loop,
        optim=plan.optim,
        output=Outputs(
            population=Path(run_dir),
            member_dirs=member_dirs,
            members=records,
            provenance=provenance,
            done=done,
            fence=claims.check if claims is not None else no_fence,
        ),
        execution=ExecConfig(**OmegaConf.to_container(cfg.execution, resolve=True)),
        dist=dist,
    )
