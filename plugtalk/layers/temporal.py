"""Temporal smoothing of per-frame codes (motion coefficients, motion codes) along time.

EDTalk smooths its audio-predicted mouth coefficients with a normalised 3-tap Gaussian (sigma 1)
and zero padding (Tan et al., ECCV 2024, demo); plugtalk also offers it for any motion code, since
frame-to-frame jitter is a common complaint about one-shot animators.  :class:`StreamingSmoother` does
the same over a stream that arrives in chunks (long videos in constant memory), with a lookahead of
``kernel_size // 2`` frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_taps", "gaussian_smooth", "StreamingSmoother"]


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


class StreamingSmoother:
    """Gaussian smoothing along time of per-frame codes that arrive in chunks.

    Frame ``t`` of the output is ``sum_j w_j x[t + j] / sum_j w_j`` over the taps ``w`` of
    :func:`gaussian_taps` (``j`` in ``[-r, r]``, ``r = kernel_size // 2``), the sums running only
    over frames that exist: at the start and end of the stream the kernel is truncated and
    renormalised, so codes are not pulled towards zero (unlike :func:`gaussian_smooth`'s zero
    padding, which is EDTalk's choice for mouth coefficients).

    :meth:`push` returns the frames whose ``r`` following frames have arrived (a lookahead of ``r``
    frames); :meth:`flush` returns the rest at the end.  Concatenated, the outputs equal smoothing
    the whole sequence at once; at most ``2 r`` frames plus one chunk are held.

    Args:
        kernel_size: odd number of taps (1 = no smoothing).
        sigma: Gaussian width in frames (default ``kernel_size / 3``: 1 for 3 taps, as EDTalk).

    Raises:
        ValueError: even or non-positive ``kernel_size``, or ``sigma <= 0``.
    """

    def __init__(self, kernel_size: int = 3, sigma: float | None = None):
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"StreamingSmoother: kernel_size must be odd and >= 1, got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.radius = self.kernel_size // 2
        self.taps = gaussian_taps(self.kernel_size, sigma if sigma is not None else self.kernel_size / 3)
        self._buf: Tensor | None = None  # left context (already emitted) + pending frames
        self._emitted = 0                # how many frames at the start of _buf were already emitted

    @property
    def pending(self) -> int:
        """Frames pushed but not yet returned."""
        return 0 if self._buf is None else self._buf.shape[0] - self._emitted

    def _smooth(self, buf: Tensor, start: int, end: int) -> Tensor:
        r = self.radius
        if end <= start:
            return buf[:0]
        flat = buf.reshape(buf.shape[0], -1)
        w = self.taps.to(device=buf.device, dtype=buf.dtype if buf.is_floating_point() else torch.float32)
        x = F.pad(flat.T.to(w.dtype), (r, r)).unfold(1, self.kernel_size, 1)            # (D, N, k)
        ones = torch.ones(1, flat.shape[0], dtype=w.dtype, device=buf.device)
        ones = F.pad(ones, (r, r)).unfold(1, self.kernel_size, 1)
        y = (x[:, start:end] * w).sum(-1) / (ones[:, start:end] * w).sum(-1)              # (D, end - start)
        return y.T.to(buf.dtype).reshape(end - start, *buf.shape[1:])

    def push(self, x: Tensor) -> Tensor:
        """Add ``(n, ...)`` frames; return the ``(m, ...)`` smoothed frames that are now final."""
        buf = x if self._buf is None else torch.cat([self._buf, x.to(self._buf)])
        end = max(self._emitted, buf.shape[0] - self.radius)
        out = self._smooth(buf, self._emitted, end)
        keep = max(0, end - self.radius)  # the r frames before the first pending one stay as left context
        self._buf, self._emitted = buf[keep:], end - keep
        return out

    def flush(self) -> Tensor | None:
        """Return the remaining smoothed frames (``None`` if nothing was pushed) and reset."""
        if self._buf is None:
            return None
        out = self._smooth(self._buf, self._emitted, self._buf.shape[0])
        self._buf, self._emitted = None, 0
        return out
