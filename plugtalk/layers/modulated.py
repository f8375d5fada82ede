"""Style-modulated convolution (StyleGAN2: Karras et al., CVPR 2020, Sec. 2.2, Eq. 1-3).

A style vector ``s`` scales the conv's input channels (modulation) and, optionally, the output is
rescaled so that each output channel has unit expected variance (demodulation, Eq. 3).  Computed
as "scale the activations, convolve with the shared weight, rescale the output", which is the
same linear map as per-sample weights but runs as one ordinary convolution for the whole batch.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .activation import BiasedLeakyReLU
from .equalized import EqualLinear
from .fir import DEFAULT_TAPS, Blur

__all__ = ["ModulatedConv2d", "StyledConv"]


class ModulatedConv2d(nn.Module):
    """Convolution modulated by a style vector.

    Args:
        in_channels, out_channels, kernel_size: conv geometry ("same" padding).
        style_dim: width of the style vector ``s``.
        demodulate: apply Eq. 3's ``rsqrt(sum w'^2 + 1e-8)`` per (sample, output channel).
        upsample: 2x up-sample with a stride-2 transposed conv followed by an FIR blur.

    Shapes: ``x (B, in, H, W)``, ``style (B, style_dim)`` -> ``(B, out, H, W)`` or ``(B, out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(taps) - factor) - (kernel_size - 1)
            self.blur = Blur(((p + 1) // 2 + factor - 1, p // 2 + 1), taps, gain=factor**2)
        else:
            self.blur = None

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        s = self.modulation(style)  # (B, in)
        w = self.weight * self.scale
        x = x * s[:, :, None, None]
        if self.upsample:
            y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=0)
        else:
            y = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.demodulate:
            energy = s.square() @ w.square().sum(dim=(2, 3)).t()  # (B, out)
            y = y * torch.rsqrt(energy + 1e-8)[:, :, None, None]
        if self.blur is not None:
            y = self.blur(y)
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}")


class StyledConv(nn.Module):
    """Modulated conv followed by a biased leaky ReLU (StyleGAN2 synthesis layer, without noise).

    The LIA-family decoders never feed per-pixel noise at inference, so none is modelled here.

    Shapes: ``x (B, in, H, W)``, ``style (B, style_dim)`` -> ``(B, out, H, W)`` (``2H, 2W`` when up-sampling).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, demodulate: bool = True, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, demodulate=demodulate,
                                    upsample=upsample, taps=taps)
        self.act = BiasedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.act(self.conv(x, style))
