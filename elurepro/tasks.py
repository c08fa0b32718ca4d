"""What a population is trained to do: the loss per member and the metrics per member.

All functions take outputs [K, B, ...] and return per-member tensors [K], summed over the batch
(``*_sum``) so that intervals and evaluation chunks can be added up on the device without syncs.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from elurepro.errors import ConfigError


class Task(Protocol):
    """What the trainer and the monitors use of a task; outputs are [K, B, ...]."""

    name: str

    def loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean loss over the batch, [K]."""
        ...

    def per_example(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member, per-example loss, [K, B]."""
        ...

    def train_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Training metrics, [K] each, summed over the batch."""
        ...

    def eval_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Evaluation metrics, [K] each, summed over the batch."""
        ...


class Classification:
    """Softmax cross-entropy; top-1 (and optionally top-5) error in percent."""

    name = "classification"

    def __init__(self, top5: bool = False) -> None:
        self.top5 = top5

    def loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean loss over the batch, [K]."""
        return self.per_example(out, x, y).mean(dim=1)

    def per_example(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss per member and example, [K, B]."""
        return self._ce(out, y)

    def _ce(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        k, b = out.shape[:2]
        y = y.expand(k, b) if y.dim() == 1 else y
        return F.cross_entropy(out.flatten(0, 1).float(), y.flatten(), reduction="none").view(k, b)

    def train_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        wrong = (out.argmax(dim=-1) != y).sum(dim=1)
        return {"error": wrong.double() * 100}

    def eval_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        y = y.expand(out.shape[:2])
        sums = {
            "loss": self._ce(out, y).double().sum(dim=1),
            "error": (out.argmax(dim=-1) != y).sum(dim=1).double() * 100,
        }
        if self.top5:
            top5 = out.topk(min(5, out.shape[-1]), dim=-1).indices
            hit = (top5 == y.unsqueeze(-1)).any(dim=-1)
            sums["top5_error"] = (~hit).sum(dim=1).double() * 100
        return sums


class Reconstruction:
    """Autoencoder (U21): sigmoid outputs, per-pixel binary cross-entropy as the training loss;
    reconstruction error = squared error summed over the pixels, averaged over images.

    ``pixel_reduction`` says how the loss combines pixels: "mean" (our default: the paper's
    learning rates up to 1e-2 then train) or "sum" (with which every unit diverges within a few
    iterations at 1e-2 under He init, measured with budget=smoke).
    """

    name = "reconstruction"

    def __init__(self, pixel_reduction: str = "mean") -> None:
        if pixel_reduction not in ("mean", "sum"):
            raise ConfigError(
                f"model.pixel_reduction must be 'mean' or 'sum', got {pixel_reduction!r}"
            )
        self.pixel_reduction = pixel_reduction

    def loss(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_example(out, x, y).mean(dim=1)

    def per_example(self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss per member and image, [K, B]."""
        bce = F.binary_cross_entropy_with_logits(out.float(), x.expand(out.shape), reduction="none")
        return bce.mean(dim=-1) if self.pixel_reduction == "mean" else bce.sum(dim=-1)

    def train_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"recon_error": self._sse(out, x).sum(dim=1)}

    def eval_sums(
        self, out: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {
            "loss": self.per_example(out, x, y).double().sum(dim=1),
            "recon_error": self._sse(out, x).sum(dim=1),
        }

    @staticmethod
    def _sse(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Summed squared error per image, [K, B]."""
        return ((torch.sigmoid(out.float()) - x) ** 2).sum(dim=-1).double()


def build_task(
    name: str, top5: bool = False, pixel_reduction: str = "mean"
) -> Classification | Reconstruction:
    if name == "classification":
        return Classification(top5=top5)
    if name == "reconstruction":
        return Reconstruction(pixel_reduction)
    raise ConfigError(f"unknown task {name!r}; known tasks: classification, reconstruction")
