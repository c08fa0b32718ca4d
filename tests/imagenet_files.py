"""A tiny ImageNet-layout data set written by the tests: <root>/{train,val}/<wnid>/<images>."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image_folder(
    root: Path, classes: int = 6, train_per_class: int = 8, val_per_class: int = 4, seed: int = 0
) -> Path:
    """JPEG and PNG images of random sizes (some greyscale), as real ImageNet folders mix them.

    Each class has its own mean colour, so that a net can learn something in a few steps.
    """
    rng = np.random.default_rng(seed)
    for c in range(classes):
        colour = rng.integers(40, 216, size=3)
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = rng.integers(20, 48, size=2)
                noise = rng.integers(-40, 41, size=(h, w, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                if i % 4 == 3:
                    Image.fromarray(pixels[:, :, 0], mode="L").save(folder / f"img{i}.png")
                else:
                    Image.fromarray(pixels).save(folder / f"img{i}.JPEG", quality=90)
    return root
