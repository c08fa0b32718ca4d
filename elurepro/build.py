"""From a resolved Hydra config to plain objects: data splits, members, population, trainer.

This is the only module that reads the config tree; everything it calls takes plain values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from elurepro.activations import activation_factory
from elurepro.data.paths import resolve_cache_dir, resolve_data_root
from elurepro.data.stream import LoaderSplit, LoaderStream, Split, StepSampler, TensorStream
from elurepro.distributed import DistContext, main_first
from elurepro.errors import ConfigError
from elurepro.members import Member, chunk, expand_members
from elurepro.models.mlp import StackedMLP
from elurepro.models.population import MemberList
from elurepro.runlog import device_name, git_commit
from elurepro.schedule import DropoutPhase, PiecewiseConstant
from elurepro.tasks import build_task
from elurepro.trainer import ExecConfig, LoopConfig, OptimConfig, Trainer

# Keys that say where or how visibly a run happens, not what it computes: left out of its identity.
_NOT_IDENTITY = ("runs_dir", "cache_dir", "device", "progress", "population", "hydra")
_NOT_IDENTITY_NESTED = {
    "data": ("root", "download", "workers"),
    "train": ("checkpoint_minutes", "eval_batch_size"),
    "execution": ("channels_last", "compile"),
}
# Budget keys that only the SPP net reads: out of every other experiment's identity, so that runs
# made before these keys existed keep their folders (and are resumed or skipped as before).
_SPP_ONLY_BUDGET = ("width", "resize", "crop")
# Keys added after runs existed, with the value that computes what those runs computed: left out
# of the identity at that value, so upgrading the suite never restarts a run in progress.
_ADDED_AT_DEFAULT = {("execution", "tf32"): False}


@dataclass
class DataBundle:
    train: Split | None
    eval_splits: dict[str, Split]
    final_splits: dict[str, Split]
    monitor: Split | None
    augment: Any
    info: dict[str, Any]  # name, official, fingerprint, description
    # Data read from disk: builds the training stream for a population's member seeds (then
    # `train` is None); None = a TensorStream over `train`.
    stream: Callable[[list[int]], LoaderStream] | None = None


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name} was asked for but CUDA is not available; use device=cpu")
    return device


def build_members(cfg: DictConfig) -> list[Member]:
    m = cfg.members
    lrs = list(m.lrs) if m.lrs is not None else [cfg.optim.lr]
    seeds = list(m.seeds)
    if cfg.budget.max_seeds is not None:
        seeds = seeds[: cfg.budget.max_seeds]
    activations = OmegaConf.to_container(m.activations, resolve=True)
    return expand_members(activations, list(m.batchnorm), lrs, seeds)


def build_data(
    cfg: DictConfig, device: torch.device, dist: DistContext | None = None
) -> DataBundle:
    name = cfg.data.name
    if name == "imagenet":
        return _imagenet(cfg, device, dist)
    if dist is not None:
        raise ConfigError(
            f"torch.distributed (WORLD_SIZE={dist.world_size}) is wired for the ImageNet "
            f"experiment only; {name} nets fit one device: run them as one process"
        )
    if name == "mnist":
        return _mnist(cfg, device)
    if name in ("cifar10", "cifar100"):
        return _cifar(cfg, device)
    raise ConfigError(f"unknown data set {name!r}; known: mnist, cifar10, cifar100, imagenet")


def _mnist(cfg: DictConfig, device: torch.device) -> DataBundle:
    from elurepro.data.mnist import load_mnist

    d = cfg.data
    arrays = load_mnist(resolve_data_root(d.root), download=d.download)
    x = arrays.train_x.reshape(len(arrays.train_x), -1).float().div_(255)  # U17: inputs in [0, 1]
    test = Split(arrays.test_x.reshape(len(arrays.test_x), -1).float().div_(255), arrays.test_y)
    n_train = len(x) - d.val_size
    if n_train <= 0:
        raise ConfigError(f"data.val_size={d.val_size} leaves no training images")
    train = Split(x[:n_train], arrays.train_y[:n_train])
    val = Split(x[n_train:], arrays.train_y[n_train:]) if d.val_size else None
    gen = torch.Generator().manual_seed(d.monitor_seed)
    monitor_idx = torch.randperm(n_train, generator=gen)[: min(d.monitor_size, n_train)]
    monitor = Split(train.x[monitor_idx], train.y[monitor_idx])
    train = _subset(train, cfg.budget.train_subset, seed=1)
    eval_splits = {"val": val} if val is not None else {"test": test}
    final = {"val": val, "test": test} if val is not None else {"test": test}
    n_eval = cfg.budget.eval_subset
    eval_splits = {k: _first(v, n_eval).to(device) for k, v in eval_splits.items()}
    final = {k: _first(v, n_eval).to(device) for k, v in final.items()}
    info = {
        "name": "mnist",
        "official": arrays.official,
        "fingerprint": arrays.fingerprint,
        "description": arrays.description,
    }
    return DataBundle(
        train.to(device), eval_splits, final, _first(monitor, n_eval).to(device), None, info
    )


def _cifar(cfg: DictConfig, device: torch.device) -> DataBundle:
    from elurepro.data.augment import pad_crop_flip
    from elurepro.data.cifar import load_cifar
    from elurepro.data.preprocess import whiten_cifar

    d = cfg.data
    arrays = load_cifar(resolve_data_root(d.root), d.name, download=d.download)
    train_x, test_x = whiten_cifar(
        arrays,
        resolve_cache_dir(cfg.cache_dir),
        d.gcn_scale,
        d.zca_filter_bias,
        progress=cfg.progress,
    )
    train = _subset(Split(train_x, arrays.train_y), cfg.budget.train_subset, seed=1)
    test = _first(Split(test_x, arrays.test_y), cfg.budget.eval_subset).to(device)
    pad = d.pad
    info = {
        "name": d.name,
        "official": arrays.official,
        "fingerprint": arrays.fingerprint,
        "description": arrays.description,
        "num_classes": arrays.num_classes,
    }
    return DataBundle(
        train.to(device),
        {"test": test},
        {"test": test},
        _first(test, 1000),
        lambda x, gen: pad_crop_flip(x, pad, gen),
        info,
    )


def image_sizes(cfg: DictConfig) -> tuple[int, int]:
    """(resize, crop) of the ImageNet pipeline: the data's, unless the budget overrides them."""
    b, d = cfg.budget, cfg.data
    resize = b.get("resize") or d.resize
    crop = b.get("crop") or d.crop
    return int(resize), int(crop)


def loader_workers(workers: int | None, dist: DistContext | None) -> int:
    """``data.workers``, or for null: the cores this process may use, less one for the training
    loop, shared by the processes on the node, at most 8."""
    if workers is not None:
        if workers < 0:
            raise ConfigError(f"data.workers must be >= 0 or null, got {workers}")
        return int(workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    per_process = (cores or 1) // (dist.local_world_size if dist else 1)
    return max(0, min(8, per_process - 1))


def _imagenet(cfg: DictConfig, device: torch.device, dist: DistContext | None) -> DataBundle:
    from torch.utils.data import Subset

    from elurepro.data.imagenet import fixed_subset, open_imagenet

    d, b = cfg.data, cfg.budget
    # data.root is the ImageFolder root itself; by default <ELUREPRO_DATA>/imagenet.
    root = resolve_data_root(d.root) if d.root else resolve_data_root(None) / "imagenet"
    resize, crop = image_sizes(cfg)
    workers = loader_workers(d.workers, dist)
    folders = open_imagenet(
        root,
        resolve_cache_dir(cfg.cache_dir),
        resize,
        crop,
        workers,
        mean_guard=main_first(dist),
        progress=cfg.progress and (dist is None or dist.is_main),
    )
    n_val, n_eval = len(folders.val), b.eval_subset
    subset = fixed_subset(n_val, min(d.val_subset, n_eval or d.val_subset), d.subset_seed)
    everything = fixed_subset(n_val, n_eval, d.subset_seed)  # the whole set at full budget
    rank, world = (dist.rank, dist.world_size) if dist else (0, 1)

    def split(indices: list[int], rank: int = rank, world: int = world) -> LoaderSplit:
        return LoaderSplit(Subset(folders.val, indices), workers, device, rank, world)

    n_train = len(folders.train)
    train = _subset_indices(n_train, b.train_subset, seed=1)

    def stream(seeds: list[int]) -> LoaderStream:
        if len(set(seeds)) != 1:
            raise ConfigError(
                f"a population fed from disk trains one seed, got seeds {sorted(set(seeds))}; "
                "set population.max_members=1"
            )
        crops = folders.train_crops(seeds[0], train)
        sampler = StepSampler(len(train), cfg.train.batch_size, seeds[0], rank, world)
        return _loader_stream(crops, sampler, workers, device, len(seeds))

    info = {
        "name": folders.name,
        "official": folders.official,
        "fingerprint": folders.fingerprint,
        "description": folders.description,
        "num_classes": len(folders.class_names),
    }
    return DataBundle(
        train=None,
        eval_splits={"val": split(subset)},
        final_splits={"val_full": split(everything)},
        # Rank 0 alone runs the monitor (it has no collectives): an unsharded split.
        monitor=split(subset[:1000], rank=0, world=1),
        augment=None,
        info=info,
        stream=stream,
    )


def _subset_indices(n: int, size: int | None, seed: int) -> list[int]:
    """All of range(n), or a fixed random subset of ``size`` of them (budget.train_subset)."""
    if size is None or size >= n:
        return list(range(n))
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return chosen[:size].sort().values.tolist()


def _loader_stream(
    dataset, sampler: StepSampler, workers: int, device: torch.device, members: int
) -> LoaderStream:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return LoaderStream(loader, sampler, device, members)


def _subset(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return Split(split.x[idx], split.y[idx])


def _first(split: Split, n: int | None) -> Split:
    return split if n is None or n >= len(split) else Split(split.x[:n], split.y[:n])


def build_population(
    cfg: DictConfig, members: list[Member], device: torch.device, num_classes: int | None = None
) -> torch.nn.Module:
    model = cfg.model
    if model.kind == "mlp":
        if any(m.batchnorm for m in members):
            raise ConfigError(
                "the MLP models have no BatchNorm variant; set members.batchnorm=[false]"
            )
        return StackedMLP(
            list(model.sizes),
            [activation_factory(m.activation, **m.activation_params) for m in members],
            [m.activation for m in members],
            [m.seed for m in members],
        ).to(device)
    if model.kind == "convnet":
        return _convnets(model, members, num_classes, device)
    if model.kind == "spp":
        return _spp_nets(cfg, members, num_classes, device)
    raise ConfigError(f"unknown model kind {model.kind!r}; known: mlp, convnet, spp")


def _convnets(
    model: DictConfig, members: list[Member], num_classes: int, device: torch.device
) -> MemberList:
    from elurepro.models.convnet import StackConvNet, with_classes

    stacks = with_classes(OmegaConf.to_container(model.stacks), num_classes)
    nets = []
    for m in members:
        # Seed r gives the same conv weights to every activation and BN variant (§4, U12).
        torch.manual_seed(m.seed)
        nets.append(
            StackConvNet(
                stacks,
                in_channels=model.in_channels,
                input_size=model.input_size,
                activation=activation_factory(m.activation, **m.activation_params),
                dropout=list(model.dropout),
                convention=model.convention,
                batchnorm=m.batchnorm,
            )
        )
    return MemberList(nets).to(device)


def _spp_nets(
    cfg: DictConfig, members: list[Member], num_classes: int, device: torch.device
) -> MemberList:
    from elurepro.models.spp import SPPNet, scale_widths

    model = cfg.model
    if any(m.batchnorm for m in members):
        raise ConfigError("the SPP net has no BatchNorm variant; set members.batchnorm=[false]")
    conv1, stacks, fc = scale_widths(
        model.conv1, model.conv_stacks, model.fc, float(cfg.budget.get("width", 1.0))
    )
    nets = []
    for m in members:
        torch.manual_seed(m.seed)  # same initial weights for ELU and ReLU (U12, §5.5 "Runs")
        nets.append(
            SPPNet(
                activation=activation_factory(m.activation, **m.activation_params),
                conv_stacks=stacks,
                conv1=conv1,
                spp_levels=list(model.spp_levels),
                pool_before_spp=bool(model.pool_before_spp),
                fc=fc,
                fc_dropout=float(model.fc_dropout),
                num_classes=num_classes,
                in_channels=model.in_channels,
                input_size=image_sizes(cfg)[1],
            )
        )
    return MemberList(nets).to(device)


def identity_hash(cfg: DictConfig, members: list[Member]) -> str:
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_IDENTITY:
        tree.pop(key, None)
    for key, subkeys in _NOT_IDENTITY_NESTED.items():
        for sub in subkeys:
            tree.get(key, {}).pop(sub, None)
    if tree.get("model", {}).get("kind") != "spp":
        for key in _SPP_ONLY_BUDGET:
            tree.get("budget", {}).pop(key, None)
    for (key, sub), default in _ADDED_AT_DEFAULT.items():
        if tree.get(key, {}).get(sub, default) == default:
            tree.get(key, {}).pop(sub, None)
    tree["_members"] = [m.id for m in members]
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]


def population_dir(cfg: DictConfig, members: list[Member]) -> Path:
    label = members[0].id if len(members) == 1 else f"pop{len(members)}-{members[0].id}"
    return experiment_dir(cfg) / f"{label}-{identity_hash(cfg, members)}"


def experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.name / f"{cfg.data.name}-{cfg.budget.name}"


def plan_chunks(cfg: DictConfig, dist: DistContext | None = None) -> list[list[Member]]:
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


@dataclass
class StepPlan:
    loop: LoopConfig
    optim: OptimConfig


def plan_steps(cfg: DictConfig, steps_per_epoch: int, lrs: list[float]) -> StepPlan:
    """Lengths, intervals and schedules in steps, after the budget's scaling."""
    t, o, b = cfg.train, cfg.optim, cfg.budget
    _check_positive(t.batch_size, "train.batch_size")
    _check_positive(t.length, "train.length")
    _check_positive(o.lr, "optim.lr")
    if t.unit not in ("epoch", "step"):
        raise ConfigError(f"train.unit must be 'epoch' or 'step', got {t.unit!r}")
    per_unit = steps_per_epoch if t.unit == "epoch" else 1
    paper_steps = round(t.length * per_unit)
    total = max(1, math.ceil(paper_steps * b.scale))
    if b.max_steps is not None:
        total = min(total, b.max_steps)
    ratio = total / paper_steps  # schedule boundaries shrink with the run

    def steps(x: float) -> int:
        return max(1, round(x * per_unit * ratio))

    def interval(x: float | None) -> int | None:
        # At least four log points however short the budget.
        return None if x is None else max(1, min(round(x * per_unit), total // 4 or 1))

    if len(o.lr_values) != len(o.milestones):
        raise ConfigError(
            f"optim.milestones ({len(o.milestones)}) and optim.lr_values "
            f"({len(o.lr_values)}) need the same length"
        )
    # The schedule is defined for optim.lr; members with another learning rate scale it.
    top = max(lrs)
    values = [v * (top / o.lr) for v in [o.lr, *o.lr_values]]
    # A very short budget can squeeze two boundaries onto one step: the later value wins.
    merged: dict[int, float] = {}
    for m, v in zip(o.milestones, values[1:]):
        merged[steps(m)] = v
    lr = PiecewiseConstant(list(merged), [values[0], *merged.values()])
    phases = [
        DropoutPhase(steps(p.start), tuple(p.rates), bool(p.all_layers)) for p in o.dropout_phases
    ]
    loop = LoopConfig(
        total_steps=total,
        log_every=interval(t.log_every),
        eval_every=interval(t.eval_every),
        act_every=interval(t.act_every),
        checkpoint_minutes=t.checkpoint_minutes,
        eval_batch_size=t.eval_batch_size,
        progress=cfg.progress,
    )
    optim = OptimConfig(
        lr=lr,
        momentum=o.momentum,
        weight_decay=o.weight_decay,
        lr_scales=[x / top for x in lrs],
        dropout_phases=phases,
    )
    return StepPlan(loop, optim)


def build_trainer(
    cfg: DictConfig,
    members: list[Member],
    data: DataBundle,
    device: torch.device,
    run_dir: Path,
    dist: DistContext | None = None,
) -> Trainer:
    o, b = cfg.optim, cfg.budget
    seeds = [m.seed for m in members]
    if data.stream is not None:
        stream = data.stream(seeds)
    else:
        stream = TensorStream(data.train, cfg.train.batch_size, seeds, data.augment)
    lrs = [m.lr for m in members]
    plan = plan_steps(cfg, stream.steps_per_epoch, lrs)
    loop, optim, total = plan.loop, plan.optim, plan.loop.total_steps
    if o.weight_decay and len(set(lrs)) > 1:
        raise ConfigError(
            "several learning rates in one population need optim.weight_decay=0; "
            "set population.max_members so that each population has one learning rate"
        )
    population = build_population(cfg, members, device, data.info.get("num_classes"))
    provenance = {
        "device": device_name(device),
        "torch": torch.__version__,
        "git_commit": git_commit(),
        "data": data.info,
        "budget": b.name,
        "total_steps": total,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    extra = {"experiment": cfg.name, "dataset": data.info["name"], "budget": b.name}
    return Trainer(
        population=population,
        task=build_task(
            cfg.model.task,
            top5=bool(cfg.model.get("top5", False)),
            pixel_reduction=cfg.model.get("pixel_reduction", "mean"),
        ),
        stream=stream,
        eval_splits=data.eval_splits,
        final_splits=data.final_splits,
        monitor_split=data.monitor if cfg.train.act_every is not None else None,
        loop=loop,
        optim=optim,
        run_dir=run_dir,
        members=[m.record(**extra) for m in members],
        provenance=provenance,
        execution=ExecConfig(**OmegaConf.to_container(cfg.execution, resolve=True)),
        dist=dist,
    )


def _check_positive(value: float, key: str) -> None:
    if value is None or not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")
