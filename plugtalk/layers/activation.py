"""StyleGAN2's "fused" leaky ReLU: ``leaky_relu(x + b, 0.2) * sqrt(2)`` (Karras et al., CVPR 2020).

The ``sqrt(2)`` gain keeps the activations' second moment under He-initialised weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["biased_leaky_relu", "BiasedLeakyReLU"]

_GAIN = math.sqrt(2.0)


def biased_leaky_relu(x: Tensor, bias: Tensor | None, negative_slope: float = 0.2, gain: float = _GAIN,
                      channel_dim: int = 1) -> Tensor:
    """``leaky_relu(x + bias, negative_slope) * gain`` with ``bias`` broadcast along ``channel_dim``."""
    if bias is not None:
        shape = [1] * x.ndim
        shape[channel_dim] = bias.numel()
        x = x + bias.reshape(shape)
    return F.leaky_relu(x, negative_slope) * gain


class BiasedLeakyReLU(nn.Module):
    """Learned per-channel bias followed by a gained leaky ReLU.  ``(B, C, ...) -> (B, C, ...)``."""

    def __init__(self, channels: int, negative_slope: float = 0.2, gain: float = _GAIN):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope, self.gain = negative_slope, gain

    def forward(self, x: Tensor) -> Tensor:
        return biased_leaky_relu(x, self.bias, self.negative_slope, self.gain)

    def extra_repr(self) -> str:
        return f"{self.bias.numel()}, negative_slope={self.negative_slope}"
