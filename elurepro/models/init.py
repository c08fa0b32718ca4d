"""The CNNs' weight initialisation (U3): N(0, gain / fan), zero biases."""

from __future__ import annotations

import math

import torch
from torch import nn


@torch.no_grad()
def normal_fan_(layer: nn.Conv2d | nn.Linear, gain: float, fan: str = "fan_in") -> None:
    """Weights N(0, gain / fan) and a zero bias. ``fan``: "fan_in" (k·k·C_in, or the inputs of a
    linear layer) or "fan_out" (k·k·C_out); gain 2 on fan_in is He normal."""
    w = layer.weight
    fan_size = w[0].numel() if fan == "fan_in" else w.shape[0] * w[0, 0].numel()
    nn.init.normal_(w, 0.0, math.sqrt(gain / fan_size))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
