"""CIFAR preprocessing of docs/protocol.md §4 (U1): global contrast normalization, then ZCA
whitening.

The constants and semantics follow pylearn2 (``global_contrast_normalize`` and ``ZCA``), which
the Maxout paper and hence the ELU paper used. The math runs in float64 on pixels on the 0-255
scale; the whitened result is stored as float32 and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from elurepro.checkpoint import atomic_write_bytes
from elurepro.data.cifar import CifarArrays
from elurepro.errors import ConfigError

# Bump when the cached result would change for the same inputs (a fix in the math, say).
CACHE_FORMAT_VERSION = 1

_CHUNK = 5000  # rows per matrix product: bounds the float64 temporaries to ~120 MB


def global_contrast_normalize(
    x: np.ndarray,
    scale: float = 55.0,
    subtract_mean: bool = True,
    use_std: bool = False,
    sqrt_bias: float = 0.0,
    min_divisor: float = 1e-8,
) -> np.ndarray:
    """Per row: optionally subtract its mean, divide by its norm (or std), times ``scale``.

    ``x`` is (images, values), any numeric dtype; the result is a new float64 array.
    As in pylearn2, a row whose divisor (norm / scale) is below ``min_divisor`` is divided by 1,
    so a constant image stays zero instead of becoming NaN.
    """
    if x.ndim != 2:
        raise ConfigError(f"GCN expects a 2-D array (images, values), got shape {x.shape}")
    out = np.array(x, dtype=np.float64, copy=True)
    if subtract_mean:
        out -= out.mean(axis=1, keepdims=True)
    if use_std:
        ddof = 1 if out.shape[1] > 1 else 0
        divisor = np.sqrt(sqrt_bias + out.var(axis=1, ddof=ddof)) / scale
    else:
        divisor = np.sqrt(sqrt_bias + np.einsum("ij,ij->i", out, out)) / scale
    divisor[divisor < min_divisor] = 1.0
    out /= divisor[:, None]
    return out


def fit_zca(
    x: np.ndarray, filter_bias: float = 0.1, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """pylearn2 ZCA: returns (mean, W) with W = V diag(1/sqrt(eig + filter_bias)) V^T.

    The covariance is the biased one, centred x^T x / N.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ConfigError(f"ZCA needs a 2-D array with at least 2 rows, got shape {x.shape}")
    n, d = x.shape
    mean = x.mean(axis=0, dtype=np.float64)
    cov = np.zeros((d, d), dtype=np.float64)
    for start in tqdm(range(0, n, _CHUNK), desc="ZCA covariance", disable=not progress):
        centred = x[start : start + _CHUNK].astype(np.float64) - mean
        cov += centred.T @ centred
    cov /= n
    eig, vec = np.linalg.eigh(cov)
    shifted = eig + filter_bias
    if shifted.min() <= 0:
        raise ConfigError(
            f"ZCA: covariance eigenvalue + filter_bias = {shifted.min():.3g} <= 0 (the data "
            "does not span its space); use filter_bias > 0, e.g. pylearn2's 0.1"
        )
    whitening = (vec / np.sqrt(shifted)) @ vec.T
    return mean, whitening


def apply_zca(
    x: np.ndarray,
    mean: np.ndarray,
    whitening: np.ndarray,
    dtype: np.dtype | type = np.float64,
    progress: bool = False,
) -> np.ndarray:
    """(x - mean) @ W, computed in float64 chunk by chunk and stored as ``dtype``."""
    if x.ndim != 2 or x.shape[1] != whitening.shape[0]:
        raise ConfigError(
            f"ZCA: data shape {x.shape} does not fit a {whitening.shape} whitening matrix"
        )
    out = np.empty(x.shape, dtype=dtype)
    for start in tqdm(range(0, x.shape[0], _CHUNK), desc="ZCA apply", disable=not progress):
        rows = x[start : start + _CHUNK].astype(np.float64) - mean
        out[start : start + _CHUNK] = rows @ whitening
    return out


def whiten_cifar(
    arrays: CifarArrays,
    cache_dir: Path,
    gcn_scale: float = 55.0,
    zca_filter_bias: float = 0.1,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GCN + ZCA (fitted on train) of both splits as float32 [N, C, H, W]; cached on disk.

    The cache file's name is a hash of the data fingerprint, the shapes, the constants and
    ``CACHE_FORMAT_VERSION``, so a change in any of them computes a new file.
    """
    cache_dir = Path(cache_dir).expanduser()
    path = cache_dir / f"cifar-gcn-zca-{_cache_key(arrays, gcn_scale, zca_filter_bias)}.pt"
    if path.is_file():
        cached = torch.load(path, map_location="cpu", weights_only=True)
        return cached["train"], cached["test"]

    if progress:
        print(
            f"whitening {arrays.description} (GCN scale {gcn_scale}, ZCA filter_bias "
            f"{zca_filter_bias}); computed once, then cached in {path}",
            flush=True,
        )
    train_shape, test_shape = tuple(arrays.train_x.shape), tuple(arrays.test_x.shape)
    # GCN converts the uint8 pixels to float64 on the 0-255 scale, as pylearn2 loads them.
    train = global_contrast_normalize(
        arrays.train_x.reshape(train_shape[0], -1).numpy(), scale=gcn_scale
    )
    test = global_contrast_normalize(
        arrays.test_x.reshape(test_shape[0], -1).numpy(), scale=gcn_scale
    )
    mean, whitening = fit_zca(train, filter_bias=zca_filter_bias, progress=progress)
    train32 = apply_zca(train, mean, whitening, dtype=np.float32, progress=progress)
    del train
    test32 = apply_zca(test, mean, whitening, dtype=np.float32, progress=progress)
    result = {
        "train": torch.from_numpy(train32).reshape(train_shape),
        "test": torch.from_numpy(test32).reshape(test_shape),
    }
    _save_atomically(result, path)
    return result["train"], result["test"]


def _cache_key(arrays: CifarArrays, gcn_scale: float, zca_filter_bias: float) -> str:
    inputs = {
        "format": CACHE_FORMAT_VERSION,
        "data": arrays.fingerprint,
        "train_shape": list(arrays.train_x.shape),
        "test_shape": list(arrays.test_x.shape),
        "gcn": {
            "scale": float(gcn_scale),
            "subtract_mean": True,
            "use_std": False,
            "sqrt_bias": 0.0,
            "min_divisor": 1e-8,
        },
        "zca": {"filter_bias": float(zca_filter_bias), "fit_on": "train"},
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _save_atomically(obj: dict, path: Path) -> None:
    # A crash mid-write must never leave a truncated file under the final name.
    atomic_write_bytes(path, lambda f: torch.save(obj, f))
