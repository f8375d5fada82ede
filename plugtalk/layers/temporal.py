"""Temporal smoothing of per-frame codes (motion coefficients, motion codes) along time.

EDTalk smooths its audio-predicted mouth coefficients with a normalised 3-tap Gaussian (sigma 1)
and zero padding (Tan et al., ECCV 2024, demo); plugtalk also offers it for any motion code, since
frame-to-frame jitter is a common complaint about one-shot animators.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_taps", "gaussian_smooth"]


def gaussian_taps(kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    """Normalised Gaussian taps ``exp(-x^2 / (2 sigma^2))``, x in ``[-k//2, k - k//2)``, computed in
    float64 and rounded to float32 (``[0.27407, 0.45186, 0.27407]`` for k=3, sigma=1)."""
    if kernel_size < 1 or sigma <= 0:
        raise ValueError(f"gaussian_taps: need kernel_size >= 1 and sigma > 0, got {kernel_size}, {sigma}")
    pad = kernel_size // 2
    x = np.arange(-pad, kernel_size - pad, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return torch.from_numpy((k / k.sum()).astype(np.float32))


def gaussian_smooth(x: Tensor, kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    """Smooth ``x`` along time (dim -2) with zero padding: ``(T, K)`` or ``(B, T, K)`` -> same shape.

    Zero padding (as EDTalk) pulls the first and last frames towards zero; it keeps the official
    behaviour so that audio-driven results match the official demo.
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"gaussian_smooth expects (T, K) or (B, T, K), got {tuple(x.shape)}")
    squeeze = x.ndim == 2
    seq = x.unsqueeze(0) if squeeze else x
    k = seq.shape[-1]
    taps = gaussian_taps(kernel_size, sigma).to(device=x.device, dtype=x.dtype)
    weight = taps.flip(0).view(1, 1, -1).expand(k, 1, -1)  # conv1d correlates; flip for a true convolution
    y = F.conv1d(seq.transpose(1, 2), weight, padding=kernel_size // 2, groups=k).transpose(1, 2)
    return y[0] if squeeze else y
