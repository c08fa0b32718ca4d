"""Training augmentation of docs/protocol.md §4 as batched tensor ops on the data's device.

Zero-pad, random crop back to the original size, random horizontal flip: one gather per batch,
no per-image Python loop, randomness drawn only from the caller's generator so that a run is
reproducible and resumable (save and restore the generator's state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from elurepro.errors import ConfigError


def pad_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random ``pad``-padded crop and 50% horizontal flip of every image in x [..., C, H, W]."""
    if x.dim() < 3:
        raise ConfigError(
            f"pad_crop_flip expects images [..., C, H, W], got shape {tuple(x.shape)}"
        )
    if pad < 0:
        raise ConfigError(f"pad_crop_flip: pad must be >= 0, got {pad}")
    *lead, c, h, w = x.shape
    images = x.reshape(-1, c, h, w)
    n = images.shape[0]
    padded = F.pad(images, (pad, pad, pad, pad))
    hp, wp = h + 2 * pad, w + 2 * pad

    # Draw on the generator's device (a CPU generator also serves CUDA data), then move.
    gen_device = generator.device
    top = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=gen_device).bool()
    top, left, flip = top.to(x.device), left.to(x.device), flip.to(x.device)

    rows = top[:, None] + torch.arange(h, device=x.device)  # [n, h]
    offsets = torch.arange(w, device=x.device)
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - offsets, offsets)  # [n, w]
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    out = padded.reshape(n, c, hp * wp).gather(2, index)
    return out.reshape(*lead, c, h, w)
