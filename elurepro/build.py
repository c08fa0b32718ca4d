"""From a resolved Hydra config to plain objects: data splits, members, population, trainer.

This is the only module that reads the config tree; everything it calls takes plain values.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from elurepro.activations import activation_factory
from elurepro.data.paths import resolve_cache_dir, resolve_data_root
from elurepro.data.stream import Split, TensorStream
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
    "data": ("root", "download"),
    "train": ("checkpoint_minutes", "eval_batch_size"),
    "execution": ("channels_last", "compile"),
}


@dataclass
class DataBundle:
    train: Split
    eval_splits: dict[str, Split]
    final_splits: dict[str, Split]
    monitor: Split | None
    augment: Any
    info: dict[str, Any]  # name, official, fingerprint, description


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


def build_data(cfg: DictConfig, device: torch.device) -> DataBundle:
    name = cfg.data.name
    if name == "mnist":
        return _mnist(cfg, device)
    if name in ("cifar10", "cifar100"):
        return _cifar(cfg, device)
    raise ConfigError(f"unknown data set {name!r}; known: mnist, cifar10, cifar100")


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
    raise ConfigError(f"unknown model kind {model.kind!r}; known: mlp, convnet")


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


def identity_hash(cfg: DictConfig, members: list[Member]) -> str:
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_IDENTITY:
        tree.pop(key, None)
    for key, subkeys in _NOT_IDENTITY_NESTED.items():
        for sub in subkeys:
            tree.get(key, {}).pop(sub, None)
    tree["_members"] = [m.id for m in members]
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]


def population_dir(cfg: DictConfig, members: list[Member]) -> Path:
    label = members[0].id if len(members) == 1 else f"pop{len(members)}-{members[0].id}"
    return experiment_dir(cfg) / f"{label}-{identity_hash(cfg, members)}"


def experiment_dir(cfg: DictConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.name / f"{cfg.data.name}-{cfg.budget.name}"


def plan_chunks(cfg: DictConfig) -> list[list[Member]]:
    members = build_members(cfg)
    if cfg.population.max_members:
        # Seed-major order: an interrupted sweep has whole pairs done, not whole activations.
        members = sorted(members, key=lambda m: m.seed)
    return chunk(members, cfg.population.max_members)


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
    cfg: DictConfig, members: list[Member], data: DataBundle, device: torch.device, run_dir: Path
) -> Trainer:
    o, b = cfg.optim, cfg.budget
    stream = TensorStream(data.train, cfg.train.batch_size, [m.seed for m in members], data.augment)
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
    )


def _check_positive(value: float, key: str) -> None:
    if value is None or not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}")
