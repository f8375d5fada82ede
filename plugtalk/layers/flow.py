"""Flow prediction and feature warping (LIA: Wang et al., "Latent Image Animator", ICLR 2022, Sec. 3.3).

At every decoder scale a 1x1 modulated conv predicts a raw 3-channel field: channels 0-1 pass
through ``tanh`` to become sampling offsets (x, y) in normalised coordinates, channel 2 through a
sigmoid to become a blend mask.  The source feature map of that scale is warped with
``grid_sample`` at ``base_grid + offset`` and blended into the decoder state.  The raw field is
up-sampled and added to the next scale's prediction (a flow "skip").

Convention kept from the official models (their checkpoints depend on it): the base grid is
corner-aligned (``linspace(-1, 1, N)``) but ``grid_sample`` uses ``align_corners=False``, so a zero
offset is *not* an identity warp.  The grid is built in float64 and rounded to float32, as the
official NumPy code does, then cached per size, device and dtype (the official code rebuilds it
on every call).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fir import DEFAULT_TAPS, Upsample2x
from .modulated import ModulatedConv2d

__all__ = ["base_grid", "warp", "FlowHead", "FlowStep"]

_GRID_CACHE: dict[tuple, Tensor] = {}


def base_grid(height: int, width: int, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> Tensor:
    """Corner-aligned sampling grid ``(1, H, W, 2)`` with last axis ``(x, y)`` in ``[-1, 1]``.

    Values are float32-rounded (official convention) and then cast to ``dtype``; cached.
    """
    key = (height, width, str(device), dtype)
    grid = _GRID_CACHE.get(key)
    if grid is None:
        xs = np.linspace(-1.0, 1.0, width).astype(np.float32)
        ys = np.linspace(-1.0, 1.0, height).astype(np.float32)
        gx, gy = np.meshgrid(xs, ys, indexing="xy")
        grid = torch.from_numpy(np.stack([gx, gy], axis=-1)[None]).to(device=device, dtype=dtype)
        _GRID_CACHE[key] = grid
    return grid


def warp(feature: Tensor, raw_flow: Tensor) -> tuple[Tensor, Tensor]:
    """Warp ``feature`` by a raw flow field and mask it.

    Args:
        feature: ``(B, C, H, W)`` map to sample from.
        raw_flow: ``(B, 3, H, W)`` raw field: offsets ``tanh(raw[:, :2])`` (x, y; normalised units,
            so 1.0 is half the image), mask ``sigmoid(raw[:, 2:3])`` in (0, 1).

    Returns:
        ``(warped * mask, mask)``: ``(B, C, H, W)`` and ``(B, 1, H, W)``.
    """
    if feature.shape[-2:] != raw_flow.shape[-2:] or feature.shape[0] != raw_flow.shape[0]:
        raise ValueError(f"warp: feature {tuple(feature.shape)} and flow {tuple(raw_flow.shape)} disagree "
                         "in batch or spatial size")
    h, w = raw_flow.shape[-2:]
    offset = torch.tanh(raw_flow[:, 0:2]).permute(0, 2, 3, 1)
    mask = torch.sigmoid(raw_flow[:, 2:3])
    grid = base_grid(h, w, raw_flow.device, raw_flow.dtype) + offset
    return F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask, mask


class FlowStep(NamedTuple):
    """One decoder scale's flow result."""

    warped: Tensor  #: ``(B, C, H, W)`` masked, warped source feature
    state: Tensor   #: ``(B, C, H, W)`` decoder state ``warped + x * (1 - mask)``
    raw: Tensor     #: ``(B, 3, H, W)`` raw flow field (offsets pre-tanh, mask pre-sigmoid)


class FlowHead(nn.Module):
    """Predict a raw flow field from the decoder state, warp the source feature, blend.

    Shapes: ``x (B, C, H, W)``, ``style (B, style_dim)``, ``feature (B, C, H, W)``,
    ``previous_raw (B, 3, H/2, W/2)`` or ``None`` -> :class:`FlowStep`.
    """

    def __init__(self, in_channels: int, style_dim: int, taps: Sequence[float] = DEFAULT_TAPS):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False, taps=taps)
        self.bias = nn.Parameter(torch.zeros(3))
        self.upsample = Upsample2x(taps)

    def forward(self, x: Tensor, style: Tensor, feature: Tensor, previous_raw: Tensor | None = None) -> FlowStep:
        raw = self.conv(x, style) + self.bias[None, :, None, None]
        if previous_raw is not None:
            raw = raw + self.upsample(previous_raw)
        warped, mask = warp(feature, raw)
        return FlowStep(warped, warped + x * (1.0 - mask), raw)
