"""Finite-impulse-response (FIR) resampling in pure PyTorch.

StyleGAN2's ``upfirdn2d`` (Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN", CVPR 2020, Sec. 2 and App. B): zero-insertion up-sampling, padding, a separable
low-pass FIR filter and sub-sampling, applied per channel.  The LIA family (LIA, DPE, EDTalk)
uses it for blurred down-sampling in the encoder and anti-aliased up-sampling in the decoder.

No compiled kernels: one depthwise ``conv2d`` per
call, so it runs unchanged on CPU and CUDA, in float32, float64 and bfloat16.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["fir_kernel", "upfirdn2d", "Blur", "Upsample2x"]

DEFAULT_TAPS = (1, 3, 3, 1)


def fir_kernel(taps: Sequence[float] = DEFAULT_TAPS, gain: float = 1.0) -> Tensor:
    """2-D separable FIR kernel ``outer(taps, taps)``, normalised to sum to ``gain``.

    Args:
        taps: 1-D filter taps (the LIA family uses the binomial ``[1, 3, 3, 1]``).
        gain: the kernel's sum; up-sampling by a factor ``f`` uses ``f**2`` so that the
            zero-inserted signal keeps its mean.

    Returns:
        ``(k, k)`` float32 tensor.
    """
    t = torch.as_tensor(list(taps), dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"fir_kernel: taps must be a non-empty 1-D sequence, got {taps!r}")
    k = torch.outer(t, t)
    return k / k.sum() * gain


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Up-sample by zero insertion, pad, FIR-filter and down-sample, channel by channel.

    Args:
        x: ``(B, C, H, W)`` feature map (any float dtype).
        kernel: ``(k, k)`` FIR kernel (true convolution: the kernel is flipped).
        up: integer up-sampling factor (zeros inserted after each sample).
        down: integer down-sampling factor (keep every ``down``-th sample).
        pad: ``(before, after)`` padding applied to both spatial axes after up-sampling;
            negative values crop.

    Returns:
        ``(B, C, (H*up + before + after - k + 1) // down, ...)`` (ceil division, as slicing).
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    kh, kw = kernel.shape
    weight = kernel.flip([0, 1]).to(dtype=x.dtype, device=x.device)
    p0, p1 = pad
    if up > 1:
        y = x.reshape(b, c, h, 1, w, 1)
        y = F.pad(y, [0, up - 1, 0, 0, 0, up - 1])
        x = y.reshape(b, c, h * up, w * up)
    if p0 > 0 or p1 > 0:
        x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        hh, ww = x.shape[-2:]
        x = x[:, :, max(-p0, 0): hh - max(-p1, 0), max(-p0, 0): ww - max(-p1, 0)]
    out = F.conv2d(x, weight.expand(c, 1, kh, kw), groups=c)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out


class Blur(nn.Module):
    """Padded FIR low-pass filter (no resampling): ``upfirdn2d(x, k, pad=pad)``.

    Args:
        pad: ``(before, after)`` padding of both spatial axes.
        taps: 1-D filter taps.
        gain: kernel sum (``4`` after a stride-2 transposed convolution).
    """

    def __init__(self, pad: tuple[int, int], taps: Sequence[float] = DEFAULT_TAPS, gain: float = 1.0):
        super().__init__()
        self.pad = tuple(pad)
        self.register_buffer("kernel", fir_kernel(taps, gain), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class Upsample2x(nn.Module):
    """Anti-aliased 2x up-sampling: ``(B, C, H, W) -> (B, C, 2H, 2W)``."""

    def __init__(self, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        factor = 2
        self.register_buffer("kernel", fir_kernel(taps, gain=factor**2), persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)
