"""Throughput of the ImageNet training loader alone (decode, resize, mean, crop, flip, collate).

    python scripts/bench_imagenet_loader.py [--root DIR] [--workers 0 2] [--images 384]

Prints images/s for each worker count, per worker process and per CPU core used, with the
machine and library versions. The mean image is computed (and cached) first, outside the timing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import PIL
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from elurepro.data.imagenet import build_imagenet_loaders
from elurepro.data.paths import resolve_cache_dir
from elurepro.errors import ElureproError


def _default_root() -> Path | None:
    base = os.environ.get("ELUREPRO_DATA")
    return Path(base) / "tiny-imagenet-10" if base else None


def measure(root: Path, cache_dir: Path, args: argparse.Namespace, workers: int) -> float:
    """Images per second of the training loader after ``args.warmup`` batches."""
    loaders = build_imagenet_loaders(
        root, cache_dir, args.batch_size, workers, resize=args.resize, crop=args.crop
    )
    batches = iter(loaders.train)

    def next_batch() -> torch.Tensor:
        nonlocal batches
        try:
            return next(batches)[0]
        except StopIteration:
            batches = iter(loaders.train)
            return next(batches)[0]

    for _ in range(args.warmup):  # worker start-up and first file-system reads
        next_batch()
    seen, start = 0, time.perf_counter()
    while seen < args.images:
        seen += next_batch().shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        type=Path,
        default=_default_root(),
        help="ImageFolder root (default $ELUREPRO_DATA/tiny-imagenet-10)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where the mean image is cached (default $ELUREPRO_CACHE or ~/.cache/elurepro)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[0, os.cpu_count() or 1])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=384, help="images timed per setting")
    parser.add_argument("--warmup", type=int, default=2, help="batches before timing")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    if args.root is None:
        parser.error("give --root or set ELUREPRO_DATA")
    args.cache_dir = resolve_cache_dir(args.cache_dir)
    # Loader workers run single-threaded; do the same in the main process so that workers=0
    # measures one core (and avoids thread oversubscription on a shared machine).
    torch.set_num_threads(1)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{cores} usable CPU cores, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Pillow {PIL.__version__}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(
        f"data: {args.root}, resize {args.resize} -> crop {args.crop}, "
        f"batch {args.batch_size}, {args.images} images timed after {args.warmup} batches"
    )
    try:
        start = time.perf_counter()
        build_imagenet_loaders(
            args.root,
            args.cache_dir,
            args.batch_size,
            max(args.workers),
            resize=args.resize,
            crop=args.crop,
        )
        print(
            f"mean image ready (computed or read from cache) in {time.perf_counter() - start:.1f} s"
        )
        for workers in args.workers:
            rate = measure(args.root, args.cache_dir, args, workers)
            processes = max(workers, 1)  # workers=0 decodes in the main process
            print(
                f"workers {workers:2d}: {rate:8.1f} images/s, "
                f"{rate / processes:7.1f} per worker process, "
                f"{rate / min(processes, cores):7.1f} per CPU core used"
            )
    except ElureproError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
