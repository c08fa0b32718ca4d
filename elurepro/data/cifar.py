"""CIFAR-10 / CIFAR-100 as in-memory uint8 tensors, from torchvision's python-pickle layout.

torchvision's own dataset classes refuse files whose md5s differ from the official release, which
rules out the lossy shared copy used for development. So the pickles are read here directly;
torchvision still supplies the file names, official checksums and the download.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.datasets.utils import download_and_extract_archive

from elurepro.errors import DataError, one_line

_DATASETS = {
    "cifar10": (CIFAR10, "CIFAR-10", 10, "labels"),
    "cifar100": (CIFAR100, "CIFAR-100", 100, "fine_labels"),
}

# md5s of the shared development copy, rebuilt from JPEGs (see the shared data folder's README),
# so that numbers made on it can be labelled as such.
_LOSSY_CIFAR10_MD5 = {
    "data_batch_1": "084b145a36d4b9aa94a11a65a39e8815",
    "data_batch_2": "841414d1136aa4b4982b3fa250ddc3af",
    "data_batch_3": "3f945ac23e5fa767f88aa1f52c465e25",
    "data_batch_4": "20c99e01fc428dea1cdc89da742bf449",
    "data_batch_5": "e4d9af00c73abcbfae9543b935674eea",
    "test_batch": "1b3d78be71f41005d2a6a6d66c8e1cac",
    "batches.meta": "56fba3d4c95115ba2531e00c9f036eb1",
}

_IMAGE_SIZE = 3 * 32 * 32


@dataclass
class CifarArrays:
    """A CIFAR split pair: images uint8 [N, 3, 32, 32], labels int64 [N]."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    official: bool
    description: str
    fingerprint: str
    classes: list[str] = field(default_factory=list)


def load_cifar(root: Path, name: str, download: bool = True) -> CifarArrays:
    """Load CIFAR-10 or CIFAR-100 from ``root``; download it there if missing and allowed."""
    if name not in _DATASETS:
        raise DataError(f"unknown CIFAR data set {name!r}; use 'cifar10' or 'cifar100'")
    cls, label, num_classes, label_key = _DATASETS[name]
    root = Path(root).expanduser()
    folder = root / cls.base_folder
    train_files = [f for f, _ in cls.train_list]
    test_files = [f for f, _ in cls.test_list]
    official_md5 = {f: md5 for f, md5 in cls.train_list + cls.test_list}
    official_md5[cls.meta["filename"]] = cls.meta["md5"]
    expected = list(official_md5)

    missing = [f for f in expected if not (folder / f).is_file()]
    if missing:
        if download:
            _download(cls, root, folder, expected)
            missing = [f for f in expected if not (folder / f).is_file()]
        if missing:
            raise DataError(_missing_message(label, folder, expected, missing, download))

    md5 = {f: _md5(folder / f) for f in expected}
    fingerprint = hashlib.sha256("".join(f"{f}:{md5[f]}\n" for f in expected).encode()).hexdigest()[
        :16
    ]
    official = md5 == official_md5
    if official:
        description = f"official {label}"
    else:
        if name == "cifar10" and md5 == _LOSSY_CIFAR10_MD5:
            description = f"LOSSY shared {label} copy (not the official release)"
        else:
            description = f"unofficial {label} copy (checksums differ from the official release)"
        differing = ", ".join(f for f in expected if md5[f] != official_md5[f])
        warnings.warn(
            f"{folder}: {description}; md5 differs from the official release for {differing}. "
            "Results made on it are not comparable with the paper's.",
            stacklevel=2,
        )

    classes = _read_meta(folder / cls.meta["filename"], cls.meta["key"], num_classes)
    train_x, train_y = _read_batches(folder, train_files, label_key, num_classes)
    test_x, test_y = _read_batches(folder, test_files, label_key, num_classes)
    return CifarArrays(
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        official=official,
        description=description,
        fingerprint=fingerprint,
        classes=classes,
    )


def _download(cls: type, root: Path, folder: Path, expected: list[str]) -> None:
    # torchvision prints its attempts and progress bars; our one line replaces them.
    chatter = io.StringIO()
    print(f"{folder} is missing: downloading {cls.url} into {root}", flush=True)
    try:
        with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as err:  # noqa: BLE001 - any network or archive failure means the same
        raise DataError(
            f"could not download {cls.url} into {root} ({type(err).__name__}: {one_line(err)}). "
            + _supply_hint(folder, expected)
        ) from None


def _missing_message(
    label: str, folder: Path, expected: list[str], missing: list[str], download: bool
) -> str:
    why = "download is disabled" if not download else "the download did not provide them"
    return f"{label} not found: {folder} lacks {', '.join(missing)} ({why}). " + _supply_hint(
        folder, expected
    )


def _supply_hint(folder: Path, expected: list[str]) -> str:
    return (
        f"Expected the python-pickle layout {folder}/{{{', '.join(expected)}}}. "
        f"Put the extracted archive's '{folder.name}' folder under a data root and point the "
        "project at that root (environment variable ELUREPRO_DATA or the config key data.root), "
        "or let the loader download it on a machine with internet access."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            # The files were pickled by Python 2; latin1 keeps the uint8 array bytes intact.
            return pickle.load(f, encoding="latin1")
    except Exception as err:  # noqa: BLE001 - truncated pickles fail in many different ways
        raise DataError(
            f"{path} is corrupt or truncated ({type(err).__name__}: {err}); "
            "delete the folder and supply the data again"
        ) from None


def _read_meta(path: Path, key: str, num_classes: int) -> list[str]:
    meta = _unpickle(path)
    names = meta.get(key) if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataError(f"{path} does not list {num_classes} class names under {key!r}")
    return [str(n) for n in names]


def _read_batches(
    folder: Path, files: list[str], label_key: str, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in files:
        path = folder / name
        batch = _unpickle(path)
        if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
            raise DataError(
                f"{path} is not a CIFAR batch: expected a dict with 'data' and {label_key!r}"
            )
        x = np.asarray(batch["data"])
        y = np.asarray(batch[label_key])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != _IMAGE_SIZE:
            raise DataError(
                f"{path}: 'data' is {x.dtype} {tuple(x.shape)}, expected uint8 (N, {_IMAGE_SIZE})"
            )
        if y.shape != (x.shape[0],):
            raise DataError(
                f"{path}: {len(y)} labels for {x.shape[0]} images; the file is inconsistent"
            )
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise DataError(f"{path}: labels outside 0..{num_classes - 1}")
        images.append(x)
        labels.append(y.astype(np.int64))
    x = np.concatenate(images).reshape(-1, 3, 32, 32)
    return torch.from_numpy(x), torch.from_numpy(np.concatenate(labels))
