"""An activation function of your own, put through the paper's protocol without a fork.

Copy this file into a package of yours (``mypkg/acts.py``) and name the unit in any experiment:

    python -m elurepro.train experiment=mnist_meanact \
        'members.activations=[elu,{name: mypkg.acts:StarReLU, scale: 0.8}]'

Any ``nn.Module`` class, or a function returning a module, works. Its keyword parameters and their
defaults are read from its signature; every one of them is part of the unit's label
(``mypkg.acts:StarReLU_bias0_scale0.8``, in folder names, reports and TensorBoard) and of the
runs' identity. ``tests/test_my_units.py`` checks the formula and runs it through every model;
copy it beside this file and change the formula.
"""

from __future__ import annotations

import torch
from torch import nn


class StarReLU(nn.Module):
    """StarReLU (Yu et al., MetaFormer baselines, 2022): scale * relu(x)^2 + bias."""

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale, self.bias = scale, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.relu(x).square() + self.bias

    def extra_repr(self) -> str:
        return f"scale={self.scale}, bias={self.bias}"
