"""Data assembly: from the ``data`` and ``budget`` config to the splits a trainer reads."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from elurepro.data.paths import resolve_cache_dir, resolve_data_root
from elurepro.data.stream import LoaderSplit, LoaderStream, Split, StepSampler
from elurepro.distributed import DistContext, main_first
from elurepro.errors import ConfigError


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
    input_size: int | None = None  # side of the images the nets see (None: flat vectors)


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
        "num_classes": 10,
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
        input_size=int(train.x.shape[-1]),
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
        input_size=crop,
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
