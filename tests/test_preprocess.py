"""GCN and ZCA against direct formulas; the whitening cache."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from elurepro.data import preprocess
from elurepro.data.cifar import CifarArrays
from elurepro.data.preprocess import (
    apply_zca,
    fit_zca,
    global_contrast_normalize,
    whiten_cifar,
)
from elurepro.errors import ConfigError


def pixels(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, d)).astype(np.float64)


def test_gcn_default_rows_have_zero_mean_and_norm_55():
    x = pixels(np.random.default_rng(0), 20, 30)
    out = global_contrast_normalize(x)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 55.0, rtol=1e-12)
    centred = x - x.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(out, 55 * centred / np.linalg.norm(centred, axis=1)[:, None])
    assert out is not x and x.max() > 1  # the input is left alone


def test_gcn_options_match_formula():
    x = pixels(np.random.default_rng(1), 10, 12)
    out = global_contrast_normalize(x, scale=2.0, subtract_mean=False, use_std=True, sqrt_bias=10)
    np.testing.assert_allclose(out, 2 * x / np.sqrt(10 + x.var(axis=1, ddof=1))[:, None])


def test_gcn_constant_image_stays_finite():
    x = np.full((2, 8), 7.0)
    x[1] = np.arange(8)
    out = global_contrast_normalize(x)
    assert np.all(out[0] == 0)
    assert np.isfinite(out).all()
    with pytest.raises(ConfigError, match="2-D"):
        global_contrast_normalize(np.zeros((2, 3, 4)))


def correlated(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix + rng.normal(size=d) * 5


def test_zca_without_bias_whitens_full_rank_data():
    x = correlated(np.random.default_rng(2), 500, 6)
    mean, w = fit_zca(x, filter_bias=0.0)
    np.testing.assert_allclose(w, w.T, atol=1e-10)
    white = apply_zca(x, mean, w)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(6), atol=1e-9)
    cov = np.cov(x, rowvar=False, bias=True)
    np.testing.assert_allclose(w, np.real(scipy.linalg.sqrtm(np.linalg.inv(cov))), atol=1e-8)
    np.testing.assert_allclose(mean, x.mean(axis=0))


def test_zca_filter_bias_matches_direct_formula():
    x = correlated(np.random.default_rng(3), 300, 5)
    _, w = fit_zca(x, filter_bias=0.1)
    cov = np.cov(x, rowvar=False, bias=True)
    expected = np.linalg.inv(np.real(scipy.linalg.sqrtm(cov + 0.1 * np.eye(5))))
    np.testing.assert_allclose(w, expected, atol=1e-8)


def test_zca_singular_without_bias_is_an_error():
    x = correlated(np.random.default_rng(4), 50, 4)
    x = np.hstack([x, x[:, :1]])  # a repeated column: rank 4 of 5
    with pytest.raises(ConfigError, match="filter_bias"):
        fit_zca(x, filter_bias=0.0)


def test_zca_chunking_gives_the_same_result(monkeypatch):
    x = correlated(np.random.default_rng(5), 103, 7)
    mean, w = fit_zca(x, filter_bias=0.1)
    full = (x - mean) @ w
    monkeypatch.setattr(preprocess, "_CHUNK", 10)
    mean2, w2 = fit_zca(x, filter_bias=0.1)
    np.testing.assert_allclose(w2, w, atol=1e-10)
    out = apply_zca(x, mean2, w2, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-5)


def tiny_arrays(seed: int = 0, fingerprint: str = "abc") -> CifarArrays:
    gen = torch.Generator().manual_seed(seed)
    return CifarArrays(
        train_x=torch.randint(0, 256, (80, 3, 4, 4), dtype=torch.uint8, generator=gen),
        train_y=torch.randint(0, 10, (80,), generator=gen),
        test_x=torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8, generator=gen),
        test_y=torch.randint(0, 10, (12,), generator=gen),
        num_classes=10,
        official=False,
        description="tiny test data",
        fingerprint=fingerprint,
    )


def direct_whitening(arrays: CifarArrays, scale: float, bias: float):
    def gcn(x):
        x = x.reshape(len(x), -1).numpy().astype(np.float64)
        x = x - x.mean(axis=1, keepdims=True)
        return scale * x / np.linalg.norm(x, axis=1, keepdims=True)

    train, test = gcn(arrays.train_x), gcn(arrays.test_x)
    mean = train.mean(axis=0)
    cov = (train - mean).T @ (train - mean) / len(train)
    w = np.linalg.inv(np.real(scipy.linalg.sqrtm(cov + bias * np.eye(cov.shape[0]))))
    return (train - mean) @ w, (test - mean) @ w


def test_whiten_cifar_matches_direct_computation_and_caches(tmp_path, monkeypatch):
    arrays = tiny_arrays()
    train, test = whiten_cifar(arrays, tmp_path, progress=False)
    assert train.dtype == torch.float32 and train.shape == (80, 3, 4, 4)
    assert test.shape == (12, 3, 4, 4)
    exp_train, exp_test = direct_whitening(arrays, 55.0, 0.1)
    np.testing.assert_allclose(train.reshape(80, -1).numpy(), exp_train, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(test.reshape(12, -1).numpy(), exp_test, rtol=1e-4, atol=1e-4)

    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"

    # The second call must read the file, not recompute.
    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of reading the cache")

    monkeypatch.setattr(preprocess, "fit_zca", fail)
    train2, test2 = whiten_cifar(arrays, tmp_path, progress=False)
    assert torch.equal(train2, train) and torch.equal(test2, test)
    monkeypatch.undo()

    whiten_cifar(arrays, tmp_path, gcn_scale=1.0, progress=False)
    whiten_cifar(arrays, tmp_path, zca_filter_bias=0.01, progress=False)
    whiten_cifar(tiny_arrays(fingerprint="other"), tmp_path, progress=False)
    names = {p.name for p in tmp_path.iterdir()}
    assert len(names) == 4
    assert not any(n.endswith(".tmp") for n in names)


def test_whiten_cifar_cache_is_written_atomically(tmp_path, monkeypatch):
    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(preprocess.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        whiten_cifar(tiny_arrays(), tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []
