"""MNIST in torchvision's on-disk layout (``<root>/MNIST/raw/*-ubyte``), loaded as tensors."""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.datasets import MNIST

from elurepro.errors import DataError, one_line

FILES = {
    "train-images-idx3-ubyte": (0x0803, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (0x0801, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (0x0803, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (0x0801, "27ae3e4e09519cfbb04c329615203637"),
}


@dataclass
class MnistArrays:
    train_x: torch.Tensor  # uint8 [60000, 28, 28]
    train_y: torch.Tensor  # int64 [60000]
    test_x: torch.Tensor
    test_y: torch.Tensor
    official: bool
    fingerprint: str
    description: str


def load_mnist(root: Path, download: bool = True) -> MnistArrays:
    """Load MNIST from ``root`` (downloading it there with checksums if missing)."""
    raw = Path(root) / "MNIST" / "raw"
    missing = [f for f in FILES if not (raw / f).is_file()]
    if missing and download:
        # torchvision prints its attempts and progress bars; our one line replaces them.
        chatter = io.StringIO()
        print(f"MNIST is not in {raw}: downloading it there", flush=True)
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                MNIST(str(root), train=True, download=True)
        except Exception as err:  # network errors come in many types; all mean the same here
            raise _missing_error(raw, missing, f"download failed: {one_line(err)}") from None
        missing = [f for f in FILES if not (raw / f).is_file()]
    if missing:
        raise _missing_error(raw, missing, "download disabled")
    md5s = {name: _check_idx(raw / name, magic) for name, (magic, _) in FILES.items()}
    official = all(md5s[name] == md5 for name, (_, md5) in FILES.items())
    train = MNIST(str(root), train=True, download=False)
    test = MNIST(str(root), train=False, download=False)
    for split, ds in (("train", train), ("t10k", test)):
        if len(ds.data) != len(ds.targets):
            raise DataError(f"MNIST {split} images and labels differ in count in {raw}")
        _check_labels(raw / f"{split}-labels-idx1-ubyte", ds.targets)
    fingerprint = hashlib.sha256("".join(md5s[f] for f in sorted(md5s)).encode()).hexdigest()[:16]
    if not official:
        differing = ", ".join(n for n, (_, md5) in FILES.items() if md5s[n] != md5)
        warnings.warn(
            f"{raw}: MNIST-format files that are not the official release (md5 differs for "
            f"{differing}). Results made on them are not comparable with the paper's.",
            stacklevel=2,
        )
    return MnistArrays(
        train_x=train.data,
        train_y=train.targets.long(),
        test_x=test.data,
        test_y=test.targets.long(),
        official=official,
        fingerprint=fingerprint,
        description="official MNIST"
        if official
        else f"MNIST-format files in {raw} (not the official release)",
    )


def _missing_error(raw: Path, missing: list[str], why: str) -> DataError:
    return DataError(
        f"MNIST not found ({why}). Searched {raw} for: {', '.join(missing)}. "
        "Put the four uncompressed IDX files there (torchvision's layout <root>/MNIST/raw/), "
        "or point data.root=<folder> or ELUREPRO_DATA=<folder> at a folder that has them."
    )


def _check_labels(path: Path, labels: torch.Tensor, classes: int = 10) -> None:
    """DataError naming the file and the first label outside 0..classes-1 (a damaged byte
    keeps the file's size valid, so only the values show it)."""
    bad = ((labels < 0) | (labels >= classes)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{path}: label {int(labels[i])} at position {i} is outside 0..{classes - 1} "
            f"({len(bad)} such labels); the file is corrupt: replace it"
        )


def _check_idx(path: Path, magic: int) -> str:
    """Validate an IDX file's header against its size (catches truncation); return its md5."""
    data = path.read_bytes()
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        raise DataError(f"{path} is not an MNIST IDX file (bad magic number); replace it")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated (header incomplete); replace it")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(torch.tensor(dims).prod())
    if len(data) != expected:
        raise DataError(
            f"{path} is truncated or corrupt: its header declares {dims} "
            f"({expected} bytes) but the file has {len(data)} bytes; replace it"
        )
    return hashlib.md5(data).hexdigest()
