"""Writes tiny CIFAR-10 / CIFAR-100 data sets in torchvision's pickle layout, for tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

PER_FILE = 20


def dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny CIFAR-10 in torchvision's layout: 5 train batches + 1 test batch of 20 images."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, size=(6 * PER_FILE, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=6 * PER_FILE)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        part = slice(i * PER_FILE, (i + 1) * PER_FILE)
        dump(
            folder / name,
            {
                "batch_label": name,
                "labels": labels[part].tolist(),
                "data": images[part],
                "filenames": [f"{j}.png" for j in range(20)],
            },
        )
    dump(
        folder / "batches.meta",
        {
            "label_names": [f"c{i}" for i in range(10)],
            "num_cases_per_batch": PER_FILE,
            "num_vis": 3072,
        },
    )
    return images, labels


def write_cifar100(root: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, size=(30, 3072), dtype=np.uint8)
    labels = rng.integers(0, 100, size=30)
    for name, part in (("train", slice(0, 20)), ("test", slice(20, 30))):
        dump(
            folder / name,
            {
                "fine_labels": labels[part].tolist(),
                "coarse_labels": (labels[part] // 5).tolist(),
                "data": images[part],
            },
        )
    dump(
        folder / "meta",
        {
            "fine_label_names": [f"f{i}" for i in range(100)],
            "coarse_label_names": [f"c{i}" for i in range(20)],
        },
    )
    return images, labels
