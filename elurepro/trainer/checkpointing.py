"""The population's checkpoint: all a resumed run needs to go on exactly as if never stopped.

Written atomically and sealed (``elurepro/checkpoint.py``), through the claim's fence; a damaged
checkpoint falls back to the previous one kept beside it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from elurepro.checkpoint import (
    CHECKPOINT,
    CheckpointInfo,
    Fence,
    restore_checkpoint,
    save_checkpoint,
)
from elurepro.errors import CheckpointError
from elurepro.models.population import Population
from elurepro.trainer.state import LoopState


class Checkpoints:
    """Saves and restores the population, its optimiser, the RNG and the loop's state."""

    def __init__(
        self,
        folder: Path,
        population: Population,
        optimizer: torch.optim.Optimizer,
        member_ids: Sequence[str],
        fence: Fence,
    ) -> None:
        self.path = Path(folder) / CHECKPOINT
        self.population = population
        self.optimizer = optimizer
        self.member_ids = list(member_ids)
        self.fence = fence
        self.saved_step: int | None = None  # the step of the last checkpoint on disk
        self.resumed_from: CheckpointInfo | None = None
        # False after falling back from a damaged checkpoint: the next save must not keep the
        # damaged file as the previous one.
        self._keep_previous = True

    def save(self, state: LoopState) -> None:
        state_dict = {
            **state.to_dict(),
            "model": self.population.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            # The dropout masks' source. Every other draw is derived from (seed, epoch, step,
            # image, rank) alone: data order, augmentation, DDP ranks' masks.
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "member_ids": self.member_ids,
        }
        save_checkpoint(
            self.path,
            state_dict,
            step=state.step,
            keep_previous=self._keep_previous,
            fence=self.fence,
        )
        self._keep_previous = True
        self.saved_step = state.step

    def restore(self, device: torch.device, warn: bool) -> LoopState | None:
        """The loop's state of the last usable checkpoint, with the population, optimiser and
        RNG set back to it; None to start afresh. ``warn``: say when it fell back."""
        restored = restore_checkpoint(self.path, device)
        if restored is None:
            return None
        ckpt = restored.state
        if ckpt["member_ids"] != self.member_ids:
            raise CheckpointError(
                f"{restored.info.path} belongs to other members; delete it to start over"
            )
        if restored.fell_back:
            self._keep_previous = False  # the damaged file is overwritten, the good one kept
            if warn:
                (bad, why), *_ = restored.skipped
                warnings.warn(
                    f"checkpoint {bad} is unusable ({why}); continuing from the previous "
                    f"checkpoint {restored.info.path.name} (step {ckpt['step']}) instead",
                    stacklevel=2,
                )
        self.resumed_from = restored.info
        self.population.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt["rng_cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        self.saved_step = ckpt["step"]
        return LoopState.from_dict(ckpt)

    def resume_line(self, step: int, total_steps: int, names: Sequence[str]) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.resumed_from.saved_at))
        return (
            f"resuming {self.path.parent.name} ({', '.join(names)}) from step {step} of "
            f"{total_steps} (checkpoint of {when})"
        )
