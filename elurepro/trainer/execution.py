"""How the training step runs on its device: precision, memory layout, DDP, compilation, and the
dropout masks' seeds under DDP."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch.nn.parallel import DistributedDataParallel

from elurepro.data.stream import derived_seed
from elurepro.distributed import DistContext
from elurepro.models.population import Population
from elurepro.runlog import device_name, has_native_bf16
from elurepro.trainer.config import ExecConfig

Forward = Callable[[torch.Tensor], torch.Tensor]


def training_forward(
    population: Population, execution: ExecConfig, dist: DistContext | None
) -> Forward:
    """Set the device up as ``execution`` asks; returns what the training step calls: the
    population, wrapped in DistributedDataParallel under DDP, compiled if asked."""
    device = next(population.parameters()).device
    if execution.bf16 and not has_native_bf16(device):
        warnings.warn(
            f"execution.bf16=true on {device_name(device)}, which has no native bf16 "
            "matrix units: bf16 is emulated there and runs far slower than fp32 (a 256x256 "
            "product: about 50x on the project's AVX2 CPU). Drop execution.bf16 here.",
            stacklevel=3,
        )
    if device.type == "cuda":
        # cuDNN uses TF32 for convolutions unless told not to: faithful fp32 by default.
        torch.backends.cudnn.allow_tf32 = execution.tf32
        torch.backends.cuda.matmul.allow_tf32 = execution.tf32
    if execution.channels_last:
        population.use_channels_last()
    module = population
    if dist is not None:
        ids = [device.index] if device.type == "cuda" else None
        module = DistributedDataParallel(population, device_ids=ids)
    if execution.compile:
        return torch.compile(module, mode=execution.compile_mode)
    return module


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager[None]:
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def seed_dropout(seed: int, step: int, dist: DistContext, device: torch.device) -> None:
    """Dropout masks from (seed, step, rank) under DDP: each rank draws its own, and a resumed
    run draws the masks it would have drawn, without saving every rank's RNG state."""
    value = derived_seed(seed, step, dist.rank, "dropout")
    torch.default_generator.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.default_generators[device.index].manual_seed(value)
