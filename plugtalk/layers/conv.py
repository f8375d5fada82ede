"""Encoder building blocks: (blur-down-sampling) convolution and the residual down-sampling block.

Both follow StyleGAN2's discriminator (Karras et al., CVPR 2020, Fig. 7b), which the LIA family
uses as its image encoder.
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from .activation import BiasedLeakyReLU
from .equalized import EqualConv2d
from .fir import DEFAULT_TAPS, Blur

__all__ = ["ConvLayer", "ResBlock"]


class ConvLayer(nn.Module):
    """Equalised conv, optionally preceded by an FIR blur and strided by 2, optionally activated.

    Down-sampling blurs first (padding so that ``H -> H/2`` exactly) and then convolves with stride 2
    and no padding; otherwise the conv is "same"-padded.  With ``activate`` the bias lives in the
    activation (``BiasedLeakyReLU``); without it the conv carries the bias (if any).

    Shapes: ``(B, in, H, W) -> (B, out, H, W)`` or ``(B, out, H/2, W/2)`` when down-sampling.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 bias: bool = True, activate: bool = True, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        if downsample:
            p = (len(taps) - 2) + (kernel_size - 1)
            self.blur = Blur(((p + 1) // 2, p // 2), taps)
            stride, padding = 2, 0
        else:
            self.blur = None
            stride, padding = 1, kernel_size // 2
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                bias=bias and not activate)
        self.act = BiasedLeakyReLU(out_channels) if activate else None

    def forward(self, x: Tensor) -> Tensor:
        if self.blur is not None:
            x = self.blur(x)
        x = self.conv(x)
        return self.act(x) if self.act is not None else x


class ResBlock(nn.Module):
    """Residual down-sampling block: ``(conv3(conv3_down(x)) + conv1_down(x)) / sqrt(2)``.

    Shapes: ``(B, in, H, W) -> (B, out, H/2, W/2)``.
    """

    def __init__(self, in_channels: int, out_channels: int, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, taps=taps)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, taps=taps)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False, taps=taps)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)
