"""ImageNet-layout data: folder checks, mean image and its cache, loaders, top-k errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from elurepro.data import imagenet
from elurepro.data.imagenet import (
    build_imagenet_loaders,
    check_image_folder,
    mean_image,
    topk_errors,
)
from elurepro.errors import DataError

CLASSES = ["n001", "n002", "n003"]
RESIZE, CROP = 16, 12


def _write_images(folder: Path, count: int, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        h, w = rng.integers(6, 30, size=2)
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        # Mix formats and modes as ImageNet does (a few PNG and greyscale files among JPEGs).
        if i % 3 == 2:
            Image.fromarray(pixels[:, :, 0], mode="L").save(folder / f"img{i}.png")
        else:
            Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=95)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "imnet"
    for c in CLASSES:
        _write_images(root / "train" / c, 4, rng)
        _write_images(root / "val" / c, 3, rng)
    return root


def _resized(path: Path) -> np.ndarray:
    """Independent reference: PIL bilinear resize to RESIZE x RESIZE, CHW on the 0-1 scale."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB").resize((RESIZE, RESIZE), Image.BILINEAR))
    return arr.astype(np.float64).transpose(2, 0, 1) / 255.0


def _reference_mean(root: Path) -> np.ndarray:
    files = sorted((root / "train").glob("*/*"))
    return np.mean([_resized(f) for f in files], axis=0)


def _which_crop(sample: np.ndarray, full: np.ndarray) -> tuple[int, int, bool]:
    """(top, left, flipped) of the CROP x CROP window of ``full`` that ``sample`` equals."""
    size = full.shape[-1]
    for r in range(size - CROP + 1):
        for s in range(size - CROP + 1):
            window = full[:, r : r + CROP, s : s + CROP]
            for flip, candidate in ((False, window), (True, window[:, :, ::-1])):
                if np.abs(sample - candidate).max() < 1e-5:
                    return r, s, flip
    raise AssertionError("the sample is no crop of the mean-subtracted image")


def test_crop_minus_mean_equals_torchvision_order() -> None:
    # Odd margins (19 - 12 = 7) exercise the centre-crop rounding and asymmetric flip offsets.
    gen = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 19, 19), dtype=torch.uint8, generator=gen)
    mean = torch.rand(3, 19, 19, generator=gen)
    whole = image.float() / 255 - mean  # the paper's order: subtract first, crop after
    centre = imagenet.CropMinusMean(mean, CROP, train=False)(image)
    torch.testing.assert_close(centre, v2.CenterCrop(CROP)(whole))
    crop = imagenet.CropMinusMean(mean, CROP, train=True)
    torch.manual_seed(1)
    seen = {_which_crop(crop(image).numpy(), whole.numpy()) for _ in range(200)}
    assert {flip for _, _, flip in seen} == {False, True}
    assert {r for r, _, _ in seen} == set(range(8)) == {s for _, s, _ in seen}


def test_check_image_folder_returns_sorted_classes(folder: Path) -> None:
    (folder / "train" / ".hidden").mkdir()
    assert check_image_folder(folder) == CLASSES


def test_mean_image_is_cached_and_matches_numpy(folder: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    mean = mean_image(folder, cache, resize=RESIZE)
    assert mean.shape == (3, RESIZE, RESIZE)
    np.testing.assert_allclose(mean.numpy(), _reference_mean(folder), atol=1e-6)
    cached = list(cache.glob("*.npy"))
    assert len(cached) == 1 and f"_{RESIZE}." in cached[0].name
    assert not list(cache.glob("*.tmp"))

    def no_recompute(*args, **kwargs):
        raise AssertionError("the mean image was recomputed instead of read from the cache")

    monkeypatch.setattr(imagenet, "_compute_mean", no_recompute)
    again = mean_image(folder, cache, resize=RESIZE)
    torch.testing.assert_close(again, mean, rtol=0, atol=0)
    # Another file list or another size is another cache entry.
    with pytest.raises(AssertionError, match="recomputed"):
        mean_image(folder, cache, resize=RESIZE + 2)
    _write_images(folder / "train" / "n001" / "more", 1, np.random.default_rng(1))
    with pytest.raises(AssertionError, match="recomputed"):
        mean_image(folder, cache, resize=RESIZE)


def test_loaders_give_mean_subtracted_crops(folder: Path, tmp_path: Path) -> None:
    loaders = build_imagenet_loaders(
        folder, tmp_path / "cache", batch_size=5, workers=0, resize=RESIZE, crop=CROP, val_subset=4
    )
    assert loaders.num_classes == 3 and loaders.class_names == CLASSES
    assert len(loaders.fingerprint) == 16
    mean = _reference_mean(folder)

    batches = list(loaders.train)
    assert len(batches) == 2  # 12 images, full batches of 5 only
    x, y = batches[0]
    assert x.shape == (5, 3, CROP, CROP) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.tolist()) <= {0, 1, 2}

    # Every training sample is some crop of (resized - mean), flipped or not.
    torch.manual_seed(0)  # workers=0: augmentation draws from the global generator
    train = loaders.train.dataset
    seen = set()
    for _ in range(3):
        for i in range(len(train)):
            path, label = train.samples[i]
            assert label == CLASSES.index(Path(path).parent.name)
            seen.add(_which_crop(train[i][0].numpy(), _resized(Path(path)) - mean))
    assert {flip for _, _, flip in seen} == {False, True}
    assert len({(r, s) for r, s, _ in seen}) > 5

    # Evaluation: the centre crop, in file order, labels by class folder.
    val = [b for b in loaders.val_full]
    xs = torch.cat([b[0] for b in val]).numpy()
    ys = torch.cat([b[1] for b in val]).tolist()
    files = sorted((folder / "val").glob("*/*"), key=lambda p: (p.parent.name, p.name))
    assert len(xs) == len(files) == 9
    offset = (RESIZE - CROP) // 2
    for got, label, f in zip(xs, ys, files, strict=True):
        expected = (_resized(f) - mean)[:, offset : offset + CROP, offset : offset + CROP]
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert label == CLASSES.index(f.parent.name)


def test_val_subset_is_fixed_by_its_seed(folder: Path, tmp_path: Path) -> None:
    def indices(subset_seed: int, size: int) -> list[int]:
        loaders = build_imagenet_loaders(
            folder, tmp_path / "c", 2, 0, RESIZE, CROP, val_subset=size, subset_seed=subset_seed
        )
        got = list(loaders.val_subset.dataset.indices)
        assert sum(len(b[1]) for b in loaders.val_subset) == len(got)
        return got

    first = indices(3, 4)
    assert len(first) == len(set(first)) == 4 and all(0 <= i < 9 for i in first)
    assert indices(3, 4) == first
    assert indices(4, 4) != first
    assert sorted(indices(3, 100)) == list(range(9))


def test_train_order_follows_the_seed(folder: Path, tmp_path: Path) -> None:
    def labels(seed: int) -> list[int]:
        loaders = build_imagenet_loaders(folder, tmp_path / "c", 3, 0, RESIZE, CROP, seed=seed)
        return [y for _, batch in loaders.train for y in batch.tolist()]

    assert labels(0) == labels(0)
    assert labels(0) != labels(1)


def test_missing_split_is_named(folder: Path) -> None:
    os.rename(folder / "val", folder / "validation")
    with pytest.raises(DataError, match=r"missing folder .*val.*train/<wnid>/\*\.JPEG"):
        check_image_folder(folder)


def test_empty_class_folder_is_named(folder: Path) -> None:
    (folder / "train" / "n004").mkdir()
    (folder / "train" / "n004" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"train/n004 holds no images"):
        check_image_folder(folder)


def test_empty_val_class_folder_is_named(folder: Path) -> None:
    for f in (folder / "val" / "n002").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"val/n002 holds no images"):
        check_image_folder(folder)


def test_val_class_without_train_folder_is_named(folder: Path) -> None:
    _write_images(folder / "val" / "n999", 1, np.random.default_rng(2))
    with pytest.raises(DataError, match=r"val/n999"):
        check_image_folder(folder)


def test_flat_val_folder_asks_for_class_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    _write_images(tmp_path / "r" / "train" / "n001", 1, rng)
    _write_images(tmp_path / "r" / "val", 2, rng)
    with pytest.raises(DataError, match="arranged into class folders"):
        check_image_folder(tmp_path / "r")


def test_val_may_lack_a_class_and_keeps_train_labels(folder: Path, tmp_path: Path) -> None:
    for f in (folder / "val" / "n001").iterdir():
        f.unlink()
    (folder / "val" / "n001").rmdir()
    loaders = build_imagenet_loaders(folder, tmp_path / "c", 2, 0, RESIZE, CROP)
    assert sorted({y for _, y in loaders.val_full.dataset.samples}) == [1, 2]


def test_topk_errors_against_numpy() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 8)).astype(np.float32)
    targets = rng.integers(0, 8, size=50)
    got = topk_errors(torch.from_numpy(logits), torch.from_numpy(targets), ks=(1, 3, 5))
    order = np.argsort(-logits, axis=1)
    for k in (1, 3, 5):
        missed = np.mean([t not in row[:k] for t, row in zip(targets, order, strict=True)])
        assert got[k] == pytest.approx(100 * missed)
    perfect = topk_errors(torch.eye(4), torch.arange(4), ks=(1,))
    assert perfect == {1: 0.0}


def test_topk_errors_rejects_k_above_classes() -> None:
    with pytest.raises(Exception, match="k <= 4"):
        topk_errors(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), ks=(1, 5))


def _tiny_imagenet() -> Path:
    base = os.environ.get("ELUREPRO_DATA")
    root = Path(base) / "tiny-imagenet-10" if base else None
    if root is None or not root.is_dir():
        pytest.skip("set ELUREPRO_DATA to a folder holding tiny-imagenet-10")
    return root


def test_tiny_imagenet_10_loads(tmp_path: Path) -> None:
    root = _tiny_imagenet()
    loaders = build_imagenet_loaders(
        root, tmp_path, batch_size=8, workers=0, resize=64, crop=56, val_subset=100
    )
    assert loaders.num_classes == 10 and len(loaders.class_names) == 10
    x, y = next(iter(loaders.train))
    assert x.shape == (8, 3, 56, 56) and y.max() < 10
    assert len(loaders.val_subset.dataset) == 100 and len(loaders.val_full.dataset) == 500
    assert len(loaders.train.dataset) == 5000
