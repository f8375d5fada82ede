"""Landmark-distance metrics: F-LMD, M-LMD (Chen et al., CVPR 2019 "ATVGnet") and AKD (Siarohin et
al., NeurIPS 2019 "FOMM"), from 68-point iBUG-300W landmarks of prediction and reference frames.

All three are the mean Euclidean distance between corresponding landmarks, averaged over the points
and then over the frames where both faces were found, in pixels:

- ``F-LMD``: all 68 points; ``M-LMD``: the 20 mouth points 48-67.  Coordinates are first rescaled to a
  256x256 frame (pixels at 256 px), so the numbers compare across resolutions.  No alignment is
  applied: head-position errors count, as in the papers' reenactment evaluations.
- ``AKD``: all 68 points, in pixels of the frames as given (FOMM evaluates at 256 px, where AKD = F-LMD).

Identical inputs give 0; a shifted image gives about the shift.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InputError
from ..face.landmarks import ALL_POINTS, MOUTH

__all__ = ["landmark_distance", "lmd", "akd", "LMD_SIZE"]

LMD_SIZE = 256


def landmark_distance(pred: np.ndarray, ref: np.ndarray, points: Sequence[int] = ALL_POINTS,
                      scale: float | np.ndarray = 1.0) -> np.ndarray:
    """Per-frame mean L2 distance between landmark sets.

    Args:
        pred, ref: ``(N, 68, 2)`` (or ``(68, 2)``) ``(x, y)`` pixels; a frame whose landmarks contain NaN
            (face not found) gives NaN.
        points: which of the 68 points to use.
        scale: multiplies the distances (scalar or ``(N,)``), e.g. ``256 / frame_size``.

    Returns:
        ``(N,)`` float64 distances.
    """
    p, r = np.asarray(pred, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if p.ndim == 2:
        p, r = p[None], r[None]
    if p.shape != r.shape or p.shape[1:] != (68, 2):
        raise InputError(f"landmarks: expected matching (N, 68, 2) arrays, got {p.shape} and {r.shape}")
    idx = list(points)
    return np.linalg.norm(p[:, idx] - r[:, idx], axis=-1).mean(axis=1) * np.asarray(scale, dtype=np.float64)


def _frame_mean(d: np.ndarray) -> float:
    ok = ~np.isnan(d)
    return float(d[ok].mean()) if ok.any() else float("nan")


def lmd(pred: np.ndarray, ref: np.ndarray, frame_size: tuple[int, int], region: str = "face") -> float:
    """F-LMD (``region="face"``) or M-LMD (``region="mouth"``), in pixels at 256 px.

    Args:
        pred, ref: ``(N, 68, 2)`` landmarks in pixels of frames of ``frame_size = (H, W)``; NaN rows
            (no face) are skipped.

    Returns:
        Mean over valid frames (NaN when there is none).
    """
    pts = {"face": ALL_POINTS, "mouth": MOUTH}.get(region)
    if pts is None:
        raise ValueError(f"lmd: region must be 'face' or 'mouth', got {region!r}")
    h, w = frame_size
    p, r = np.array(pred, dtype=np.float64), np.array(ref, dtype=np.float64)
    p, r = p.reshape(-1, 68, 2), r.reshape(-1, 68, 2)
    size = np.array([LMD_SIZE / w, LMD_SIZE / h])
    return _frame_mean(landmark_distance(p * size, r * size, pts))


def akd(pred: np.ndarray, ref: np.ndarray) -> float:
    """Average keypoint distance (FOMM), in pixels of the frames as given; NaN rows are skipped."""
    return _frame_mean(landmark_distance(np.asarray(pred).reshape(-1, 68, 2), np.asarray(ref).reshape(-1, 68, 2)))
