"""Equalised-learning-rate layers (Karras et al., "Progressive Growing of GANs", ICLR 2018, Sec. 4.1).

The weight is stored with unit variance and scaled by He's constant ``1/sqrt(fan_in)`` at run time,
so every layer learns at the same rate under Adam.  The LIA family builds its encoder, motion MLPs
and the modulation of its synthesis network from these.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activation import biased_leaky_relu

__all__ = ["EqualLinear", "EqualConv2d", "linear_stack"]


class EqualLinear(nn.Module):
    """``y = x @ (W * lr_mul / sqrt(in))^T + b * lr_mul`` with optional biased leaky ReLU.

    Args:
        in_features, out_features: widths.
        bias: learn a bias.
        bias_init: initial bias value (1 for StyleGAN modulation, so styles start at identity).
        lr_mul: learning-rate multiplier (1 everywhere in the LIA family).
        activation: apply ``leaky_relu(y, 0.2) * sqrt(2)`` with the bias folded in.

    Shapes: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            y = F.linear(x, self.weight * self.scale)
            return biased_leaky_relu(y, bias, channel_dim=-1)
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
                f"lr_mul={self.lr_mul}, activation={self.activation}")


class EqualConv2d(nn.Module):
    """Conv2d with run-time He scaling ``1/sqrt(in * k * k)``.

    Shapes: ``(B, in, H, W) -> (B, out, H', W')``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.stride, self.padding = stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


def linear_stack(dims: list[int]) -> nn.Sequential:
    """``nn.Sequential`` of EqualLinear layers ``dims[0] -> dims[1] -> ... -> dims[-1]``, no activations.

    The LIA family's motion MLPs are purely linear (a composition of affine maps); this reproduces that.
    """
    if len(dims) < 2:
        raise ValueError(f"linear_stack needs at least two widths, got {dims}")
    return nn.Sequential(*(EqualLinear(a, b) for a, b in zip(dims[:-1], dims[1:])))
