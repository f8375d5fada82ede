"""RGB head of the LIA-family synthesis networks: a 1x1 conv to RGB with a skip from the coarser scale.

Unlike StyleGAN2's ToRGB it is not modulated: ``rgb = lrelu(conv1x1(x) + b1) * sqrt(2) + b2`` plus the
2x-up-sampled RGB of the previous scale.  No final ``tanh``: outputs may leave ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from .activation import BiasedLeakyReLU
from .equalized import EqualConv2d
from .fir import DEFAULT_TAPS, Upsample2x

__all__ = ["RGBHead"]


class RGBHead(nn.Module):
    """``(B, C, H, W)`` (+ previous ``(B, 3, H/2, W/2)``) -> ``(B, 3, H, W)``."""

    def __init__(self, in_channels: int, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        self.conv = EqualConv2d(in_channels, 3, 1, bias=False)
        self.act = BiasedLeakyReLU(3)
        self.bias = nn.Parameter(torch.zeros(3))
        self.upsample = Upsample2x(taps)

    def forward(self, x: Tensor, previous: Tensor | None = None) -> Tensor:
        rgb = self.act(self.conv(x)) + self.bias[None, :, None, None]
        if previous is not None:
            rgb = rgb + self.upsample(previous)
        return rgb
