"""ImageNet in ``ImageFolder`` layout: checks, mean image, loaders, top-k errors
(docs/protocol.md §5.5).

Pixels are floats on the 0-1 scale (uint8 / 255), not Caffe's 0-255: the nets use He init, which
keeps the input's scale through the layers, so 0-255 inputs would make the initial logits about
255 times larger (exactly so for ReLU with zero biases). The per-pixel mean image (§5.5, U26:
over the training set, resized to resize x resize ignoring the aspect ratio) is on the same scale
and is subtracted before cropping.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms import v2
from tqdm import tqdm

from elurepro.checkpoint import atomic_write_bytes
from elurepro.data.stream import derived_seed
from elurepro.errors import ConfigError, DataError

LAYOUT = (
    "expected <root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (the official ILSVRC-2012 "
    "val set comes as one flat folder and must be arranged into class folders first, e.g. with "
    "the devkit's ground-truth labels)"
)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _has_image(folder: Path) -> bool:
    # Stop at the first image: a full listing of 1.3 M files is ImageFolder's job, done once.
    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def check_image_folder(root: Path) -> list[str]:
    """The sorted class names of ``root/train``; DataError if the layout is not usable."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ImageNet root {root} does not exist; {LAYOUT}")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"missing folder {root / split}; {LAYOUT}")
    classes = _class_dirs(root / "train")
    if not classes:
        raise DataError(f"{root / 'train'} holds no class folders; {LAYOUT}")
    val_classes = _class_dirs(root / "val")
    if not val_classes:
        raise DataError(f"{root / 'val'} holds no class folders; {LAYOUT}")
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        shown = ", ".join(str(root / "val" / c) for c in unknown[:5])
        raise DataError(
            f"{len(unknown)} validation class folder(s) have no training folder: {shown}; "
            f"the class folder names of val/ must match those of train/; {LAYOUT}"
        )
    for split, names in (("train", classes), ("val", val_classes)):
        for name in names:
            if not _has_image(root / split / name):
                raise DataError(
                    f"class folder {root / split / name} holds no images "
                    f"({', '.join(IMG_EXTENSIONS)}); remove it or fill it; {LAYOUT}"
                )
    return classes


class _Folder(ImageFolder):
    """ImageFolder with the class list given, so val labels match train's even if val lacks some."""

    def __init__(self, root: Path, classes: list[str], transform: v2.Transform | None) -> None:
        self._given_classes = list(classes)
        super().__init__(str(root), transform=transform, allow_empty=True)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        return self._given_classes, {c: i for i, c in enumerate(self._given_classes)}


def _file_list_hash(samples: list[tuple[str, int]], base: Path) -> str:
    skip = len(str(base)) + 1
    digest = hashlib.sha256()
    for path, label in samples:
        digest.update(f"{path[skip:]}\t{label}\n".encode())
    return digest.hexdigest()[:16]


class CropMinusMean(torch.nn.Module):
    """Crops a uint8 [3, H, W] image (randomly with a random horizontal flip, or at the centre)
    and returns the crop as 0-1 floats minus the same crop of the [3, H, W] mean image.

    This equals subtracting the mean from the whole image and cropping after (docs/protocol.md
    §5.5), but flips bytes instead of floats and converts only the crop: about half the
    per-image cost of ``ToDtype``, subtraction, ``RandomCrop`` and ``RandomHorizontalFlip`` in
    that order.
    Randomness comes from ``generator`` when given (the trainer derives one per image), else from
    torch's global generator, which loader workers seed as for v2 transforms.
    """

    def __init__(self, mean: torch.Tensor, crop: int, train: bool) -> None:
        super().__init__()
        if mean.dim() != 3 or not 0 < crop <= min(mean.shape[-2:]):
            raise ConfigError(f"crop {crop} does not fit the mean image {tuple(mean.shape)}")
        self.mean = mean
        self.mirrored = mean.flip(-1).contiguous()
        self.crop = crop
        self.train = train

    def forward(
        self, image: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        image = image.as_subclass(torch.Tensor)
        if image.shape != self.mean.shape:
            raise DataError(f"image of shape {tuple(image.shape)} vs mean {tuple(self.mean.shape)}")
        height, width, c = image.shape[-2], image.shape[-1], self.crop
        if self.train:
            top = int(torch.randint(0, height - c + 1, (), generator=generator))
            left = int(torch.randint(0, width - c + 1, (), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
        else:  # torchvision's centre-crop rounding
            top, left, flip = round((height - c) / 2), round((width - c) / 2), False
        patch = image[:, top : top + c, left : left + c]
        if flip:
            # The mirrored mean's columns [W-left-c, W-left) are the flipped mean crop.
            mean = self.mirrored[:, top : top + c, width - left - c : width - left]
            patch = patch.flip(-1)
        else:
            mean = self.mean[:, top : top + c, left : left + c]
        return patch.to(torch.float32).div_(255.0).sub_(mean)

    def extra_repr(self) -> str:
        return f"crop={self.crop}, train={self.train}"


def _resized(resize: int) -> list[v2.Transform]:
    # Both sides to `resize`, ignoring the aspect ratio (U26); PIL resizes with antialiasing.
    return [v2.Resize((resize, resize)), v2.ToImage()]


def train_transform(mean: torch.Tensor, crop: int) -> v2.Compose:
    """Resize to the mean's size, random crop and flip, 0-1 floats minus the mean."""
    return v2.Compose(_resized(mean.shape[-1]) + [CropMinusMean(mean, crop, train=True)])


def eval_transform(mean: torch.Tensor, crop: int) -> v2.Compose:
    """Resize to the mean's size, centre crop, 0-1 floats minus the mean."""
    return v2.Compose(_resized(mean.shape[-1]) + [CropMinusMean(mean, crop, train=False)])


def _compute_mean(train: Dataset, resize: int, workers: int, progress: bool = True) -> torch.Tensor:
    loader = DataLoader(train, batch_size=64, num_workers=workers)
    total = torch.zeros(3, resize, resize, dtype=torch.float64)
    count = 0
    with tqdm(
        total=len(train), desc=f"mean image {resize}x{resize}", unit="img", disable=not progress
    ) as bar:
        for images, _ in loader:
            total += images.to(torch.float64).sum(0)
            count += images.shape[0]
            bar.update(images.shape[0])
    return (total / (255.0 * count)).to(torch.float32)


def _save_atomically(array: np.ndarray, path: Path) -> None:
    atomic_write_bytes(path, lambda f: np.save(f, array))


def _mean_image(
    train: _Folder, cache_dir: Path, resize: int, workers: int, progress: bool = True
) -> torch.Tensor:
    path = (
        Path(cache_dir)
        / f"imagenet_mean_{_file_list_hash(train.samples, Path(train.root))}_{resize}.npy"
    )
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape == (3, resize, resize):
                return torch.from_numpy(cached)
        except (OSError, ValueError):
            pass  # unreadable cache: recompute and overwrite it
    plain = copy.copy(train)
    plain.transform = v2.Compose(_resized(resize))
    mean = _compute_mean(plain, resize, workers, progress)
    _save_atomically(mean.numpy(), path)
    return mean


def mean_image(root: Path, cache_dir: Path, resize: int = 256, workers: int = 0) -> torch.Tensor:
    """Per-pixel mean [3, resize, resize] of root/train on the 0-1 scale, cached in cache_dir.

    Under DDP, call this on rank 0 before a barrier so that one process computes it.
    """
    train = _Folder(Path(root) / "train", check_image_folder(root), None)
    return _mean_image(train, cache_dir, resize, workers)


@dataclass
class ImagenetLoaders:
    """Loaders of one ImageNet-layout data set; ``fingerprint`` hashes both file lists."""

    train: DataLoader
    val_subset: DataLoader
    val_full: DataLoader
    num_classes: int
    class_names: list[str]
    fingerprint: str


def _loader(dataset: Dataset, batch_size: int, workers: int, **kwargs: object) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        **kwargs,
    )


def build_imagenet_loaders(
    root: Path,
    cache_dir: Path,
    batch_size: int,
    workers: int,
    resize: int = 256,
    crop: int = 224,
    val_subset: int = 5000,
    subset_seed: int = 0,
    distributed: bool = False,
    seed: int = 0,
) -> ImagenetLoaders:
    """Training loader (random crop + flip, shuffled from ``seed``, full batches only) and two
    centre-crop validation loaders: a fixed random subset of ``val_subset`` images and all of them.

    Augmentation randomness comes from the worker seeds, which the loader draws from its seeded
    generator, so with the same ``workers`` two runs see identical batches (the pairing of U12);
    with ``workers=0`` it comes from the global torch RNG instead. With ``distributed=True`` the
    process group must be initialised first, ``batch_size`` is per process, and the caller calls
    ``loaders.train.sampler.set_epoch(epoch)``; the validation loaders are not split across ranks.
    """
    if not 0 < crop <= resize:
        raise ConfigError(f"need 0 < crop <= resize, got crop={crop}, resize={resize}")
    if batch_size < 1 or workers < 0 or val_subset < 1:
        raise ConfigError(
            f"need batch_size >= 1, workers >= 0, val_subset >= 1; got {batch_size}, {workers}, "
            f"{val_subset}"
        )
    root = Path(root)
    classes = check_image_folder(root)
    train = _Folder(root / "train", classes, None)
    val = _Folder(root / "val", classes, None)
    if len(train) < batch_size:
        raise ConfigError(
            f"{root / 'train'} has {len(train)} images, fewer than one batch of {batch_size}"
        )
    mean = _mean_image(train, cache_dir, resize, workers)
    train.transform = train_transform(mean, crop)
    val.transform = eval_transform(mean, crop)

    chosen = fixed_subset(len(val), val_subset, subset_seed)

    if distributed:
        sampler = DistributedSampler(train, shuffle=True, seed=seed)
        # Different ranks draw different augmentation streams, each reproducible.
        generator = torch.Generator().manual_seed(seed * 65536 + sampler.rank)
        train_loader = _loader(
            train, batch_size, workers, sampler=sampler, drop_last=True, generator=generator
        )
    else:
        generator = torch.Generator().manual_seed(seed)
        train_loader = _loader(
            train, batch_size, workers, shuffle=True, drop_last=True, generator=generator
        )
    return ImagenetLoaders(
        train=train_loader,
        val_subset=_loader(Subset(val, chosen), batch_size, workers),
        val_full=_loader(val, batch_size, workers),
        num_classes=len(classes),
        class_names=classes,
        fingerprint=_file_list_hash(train.samples + val.samples, root),
    )


def fixed_subset(n: int, size: int | None, seed: int) -> list[int]:
    """Sorted indices of a fixed random subset of ``size`` of n items (all for None or >= n).

    Prefixes of one permutation: a smaller subset of the same seed lies inside a larger one.
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[: n if size is None else size].sort().values.tolist()


class SeededCrops(Dataset):
    """Training images keyed by (position, epoch), the items of ``stream.StepSampler``.

    Key (p, e) gives image i = indices[p], resized, cropped and flipped at random with a generator
    seeded from (seed, e, i) alone, minus the mean. So an image's augmentation in an epoch does
    not depend on which loader worker or process reads it, nor on where a run was resumed.
    """

    def __init__(
        self, folder: _Folder, indices: list[int], mean: torch.Tensor, crop: int, seed: int
    ) -> None:
        self.samples, self.loader = folder.samples, folder.loader
        self.indices = indices
        self.resize = v2.Compose(_resized(mean.shape[-1]))
        self.crop = CropMinusMean(mean, crop, train=True)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        position, epoch = key
        index = self.indices[position]
        path, label = self.samples[index]
        image = self.resize(self.loader(path))
        generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch, index, "augment"))
        return self.crop(image, generator), label


# ILSVRC-2012 as distributed: 1,000 classes, 1,281,167 training and 50,000 validation images.
_ILSVRC2012 = (1000, 1_281_167, 50_000)


@dataclass
class ImagenetFolders:
    """The checked train and val folders of one ImageNet-layout root and its mean image."""

    root: Path
    train: _Folder  # untransformed: ``train_crops`` reads it
    val: _Folder  # centre crop minus the mean
    mean: torch.Tensor
    crop: int
    class_names: list[str]
    fingerprint: str

    @property
    def official(self) -> bool:
        """Whether the folders hold as many classes and images as ILSVRC-2012."""
        return (len(self.class_names), len(self.train), len(self.val)) == _ILSVRC2012

    @property
    def name(self) -> str:
        """'imagenet' for ILSVRC-2012, else the root folder's name (e.g. tiny-imagenet-10)."""
        return "imagenet" if self.official else self.root.name

    @property
    def description(self) -> str:
        what = "ILSVRC-2012" if self.official else "NOT the ILSVRC-2012 set"
        return (
            f"ImageFolder {self.root} ({what}): {len(self.class_names)} classes, "
            f"{len(self.train)} training and {len(self.val)} validation images"
        )

    def train_crops(self, seed: int, indices: list[int]) -> SeededCrops:
        return SeededCrops(self.train, indices, self.mean, self.crop, seed)


def open_imagenet(
    root: Path,
    cache_dir: Path,
    resize: int = 256,
    crop: int = 224,
    workers: int = 0,
    mean_guard: contextlib.AbstractContextManager | None = None,
    progress: bool = True,
) -> ImagenetFolders:
    """Check ``root``, list its images and get the training mean image (cached in cache_dir).

    ``mean_guard`` wraps the mean computation; under DDP it lets rank 0 compute and cache the
    mean while the other ranks wait, then read the cache.
    """
    if not 0 < crop <= resize:
        raise ConfigError(f"need 0 < crop <= resize, got crop={crop}, resize={resize}")
    root = Path(root)
    classes = check_image_folder(root)
    train = _Folder(root / "train", classes, None)
    val = _Folder(root / "val", classes, None)
    with mean_guard or contextlib.nullcontext():
        mean = _mean_image(train, cache_dir, resize, workers, progress)
    val.transform = eval_transform(mean, crop)
    fingerprint = _file_list_hash(train.samples + val.samples, root)
    return ImagenetFolders(root, train, val, mean, crop, classes, fingerprint)


def topk_errors(
    logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = (1, 5)
) -> dict[int, float]:
    """{k: percent of rows whose target is not among the k largest logits}."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(
            f"need logits [N, C] and targets [N], got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if not ks or min(ks) < 1 or max(ks) > logits.shape[1]:
        raise ConfigError(f"top-k needs 1 <= k <= {logits.shape[1]} classes, got ks={ks}")
    top = logits.topk(max(ks), dim=1).indices
    hit = top == targets.unsqueeze(1)
    return {k: 100.0 * (1.0 - hit[:, :k].any(dim=1).float().mean().item()) for k in ks}
