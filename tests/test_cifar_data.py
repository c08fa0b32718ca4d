"""CIFAR loading (tiny data sets in the official pickle layout) and the augmentation."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10

from elurepro.data import cifar
from elurepro.data.augment import pad_crop_flip
from elurepro.data.cifar import load_cifar
from elurepro.errors import ConfigError, DataError
from tests.cifar_files import dump, write_cifar10, write_cifar100


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_tiny_cifar10_loads_with_checksum_warning(tmp_path):
    images, labels = write_cifar10(tmp_path)
    with pytest.warns(UserWarning, match="differs from the official release"):
        data = load_cifar(tmp_path, "cifar10", download=False)
    assert not data.official
    assert data.description.startswith("unofficial CIFAR-10")
    assert data.num_classes == 10 and data.classes[3] == "c3"
    assert data.train_x.shape == (100, 3, 32, 32) and data.train_x.dtype == torch.uint8
    assert data.train_y.dtype == torch.int64 and data.test_x.shape == (20, 3, 32, 32)
    # Row-major CHW: channel 0 is the first 1024 values, rows of 32.
    assert data.train_x[37, 1, 2, 5].item() == images[37, 1024 + 2 * 32 + 5]
    assert data.test_x[3, 2, 31, 31].item() == images[100 + 3, 3071]
    np.testing.assert_array_equal(data.train_y.numpy(), labels[:100])
    np.testing.assert_array_equal(data.test_y.numpy(), labels[100:])


def test_tiny_cifar100_loads_fine_labels(tmp_path):
    images, labels = write_cifar100(tmp_path)
    with pytest.warns(UserWarning, match="CIFAR-100"):
        data = load_cifar(tmp_path, "cifar100", download=False)
    assert data.num_classes == 100 and not data.official
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(data.train_y.numpy(), labels[:20])
    np.testing.assert_array_equal(data.test_x.reshape(10, -1).numpy(), images[20:])


def test_official_checksums_mean_official_and_no_warning(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    monkeypatch.setattr(
        CIFAR10, "train_list", [[f, md5(folder / f)] for f, _ in CIFAR10.train_list]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / "batches.meta")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_cifar(tmp_path, "cifar10", download=False)
    assert data.official and data.description == "official CIFAR-10"


def test_lossy_copy_is_recognised_by_its_md5s(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    lossy = {p.name: md5(p) for p in folder.iterdir()}
    monkeypatch.setattr(cifar, "_LOSSY_CIFAR10_MD5", lossy)
    with pytest.warns(UserWarning, match="LOSSY"):
        data = load_cifar(tmp_path, "cifar10", download=False)
    assert data.description == "LOSSY shared CIFAR-10 copy (not the official release)"


def test_fingerprint_follows_file_contents(tmp_path):
    write_cifar10(tmp_path / "a")
    write_cifar10(tmp_path / "b")
    write_cifar10(tmp_path / "c", seed=1)
    with pytest.warns(UserWarning):
        prints = [load_cifar(tmp_path / n, "cifar10", download=False).fingerprint for n in "abc"]
    assert prints[0] == prints[1] != prints[2]


def test_truncated_pickle_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.warns(UserWarning), pytest.raises(DataError, match="data_batch_3.*truncated"):
        load_cifar(tmp_path, "cifar10", download=False)


def test_wrong_array_size_names_the_file(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    dump(path, {"labels": [0] * 20, "data": np.zeros((20, 3000), dtype=np.uint8)})
    with pytest.warns(UserWarning), pytest.raises(DataError, match=r"test_batch.*\(20, 3000\)"):
        load_cifar(tmp_path, "cifar10", download=False)
    dump(path, {"labels": [0] * 19, "data": np.zeros((20, 3072), dtype=np.uint8)})
    with pytest.warns(UserWarning), pytest.raises(DataError, match="test_batch: 19 labels"):
        load_cifar(tmp_path, "cifar10", download=False)


def test_missing_folder_without_download(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10", download=False)
    message = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "data_batch_1" in message and "test_batch" in message and "batches.meta" in message
    assert "ELUREPRO_DATA" in message and "data.root" in message


def test_failed_download_is_a_data_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar, "download_and_extract_archive", offline)
    with pytest.raises(DataError, match="could not download .*cifar-100-python.tar.gz"):
        load_cifar(tmp_path, "cifar100", download=True)


def test_unknown_name(tmp_path):
    with pytest.raises(DataError, match="cifar10.*cifar100"):
        load_cifar(tmp_path, "cifar1000")


def test_shared_lossy_copy_loads():
    root = os.environ.get("ELUREPRO_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip("ELUREPRO_DATA does not point at a folder with cifar-10-batches-py")
    with pytest.warns(UserWarning, match="LOSSY"):
        data = load_cifar(Path(root), "cifar10", download=False)
    if not data.description.startswith("LOSSY"):
        pytest.skip(f"ELUREPRO_DATA holds another copy: {data.description}")
    assert data.train_x.shape == (50000, 3, 32, 32) and data.test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.test_y).tolist() == [1000] * 10
    means = data.train_x.float().mean(dim=(0, 2, 3)) / 255
    torch.testing.assert_close(means, torch.tensor([0.4913, 0.4821, 0.4465]), atol=1e-3, rtol=0)


# ---------------------------------------------------------------- augmentation


def reference_crops(image: np.ndarray, pad: int) -> dict[tuple[int, int, bool], np.ndarray]:
    """Every crop of the zero-padded image, flipped or not, by a per-image loop."""
    c, h, w = image.shape
    padded = np.zeros((c, h + 2 * pad, w + 2 * pad), dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    crops = {}
    for top in range(2 * pad + 1):
        for left in range(2 * pad + 1):
            crop = padded[:, top : top + h, left : left + w]
            crops[(top, left, False)] = crop
            crops[(top, left, True)] = crop[:, :, ::-1]
    return crops


def test_pad_crop_flip_outputs_are_crops_of_the_padded_input():
    pad, n = 2, 500
    x = torch.rand(5, n // 5, 3, 6, 6)  # leading dims [K, B]
    out = pad_crop_flip(x, pad, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    images, outputs = x.reshape(n, 3, 6, 6).numpy(), out.reshape(n, 3, 6, 6).numpy()
    found = []
    for image, result in zip(images, outputs, strict=True):
        matches = [
            key for key, crop in reference_crops(image, pad).items() if np.array_equal(crop, result)
        ]
        assert len(matches) == 1
        found.append(matches[0])
    flips = np.mean([flip for _, _, flip in found])
    assert 0.4 < flips < 0.6
    positions = {(top, left) for top, left, _ in found}
    assert len(positions) == (2 * pad + 1) ** 2  # every offset occurs


def test_pad_crop_flip_is_reproducible_from_the_generator():
    x = torch.randint(0, 255, (8, 3, 32, 32), dtype=torch.uint8)
    a = pad_crop_flip(x, 4, torch.Generator().manual_seed(5))
    b = pad_crop_flip(x, 4, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.uint8
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    first, second = pad_crop_flip(x, 4, gen), pad_crop_flip(x, 4, gen)
    assert not torch.equal(first, second)
    gen.set_state(state)  # resuming from a saved state repeats the stream
    assert torch.equal(pad_crop_flip(x, 4, gen), first)
    # The global RNG plays no part.
    torch.manual_seed(0)
    c = pad_crop_flip(x, 4, torch.Generator().manual_seed(5))
    torch.manual_seed(1)
    d = pad_crop_flip(x, 4, torch.Generator().manual_seed(5))
    assert torch.equal(c, d)


def test_pad_zero_only_flips():
    x = torch.rand(64, 2, 5, 5)
    out = pad_crop_flip(x, 0, torch.Generator().manual_seed(1))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert torch.all(same | flipped) and same.any() and flipped.any()


def test_pad_crop_flip_bad_input():
    gen = torch.Generator()
    with pytest.raises(ConfigError, match="C, H, W"):
        pad_crop_flip(torch.zeros(4, 4), 1, gen)
    with pytest.raises(ConfigError, match="pad"):
        pad_crop_flip(torch.zeros(1, 3, 4, 4), -1, gen)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pad_crop_flip_on_cuda_matches_cpu():
    x = torch.rand(16, 3, 32, 32)
    cpu = pad_crop_flip(x, 4, torch.Generator().manual_seed(2))
    gpu = pad_crop_flip(x.cuda(), 4, torch.Generator().manual_seed(2))
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu(), cpu)
