"""Input checks shared by the metrics: RGB uint8 images, single or batched, and luma conversion."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..face.detect import as_rgb_uint8

__all__ = ["image_batch", "paired_batches", "luma", "per_image_result"]


def image_batch(images, name: str = "images") -> tuple[np.ndarray, bool]:
    """``(N, H, W, 3)`` uint8 from one ``(H, W, 3)`` image or a batch; also says whether it was one image.

    Raises:
        InputError: wrong dtype, rank or channel count, or an empty batch.
    """
    a = np.asarray(images)
    if a.ndim == 3:
        return as_rgb_uint8(a, name)[None], True
    if a.ndim != 4 or a.dtype != np.uint8 or a.shape[-1] != 3:
        raise InputError(f"{name}: expected (H, W, 3) or (N, H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
    if a.shape[0] == 0:
        raise InputError(f"{name}: empty batch (N = 0)")
    return np.ascontiguousarray(a), False


def paired_batches(pred, ref, names: tuple[str, str] = ("pred", "ref")) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check two image batches of identical shape (full-reference metrics).

    Raises:
        InputError: either is not RGB uint8, or their shapes differ.
    """
    p, single_p = image_batch(pred, names[0])
    r, single_r = image_batch(ref, names[1])
    if p.shape != r.shape:
        raise InputError(f"{names[0]} {p.shape} and {names[1]} {r.shape} must have the same shape")
    return p, r, single_p and single_r


def per_image_result(values, single: bool):
    """A float for one image, an ``(N,)`` float64 array for a batch."""
    v = np.asarray(values, dtype=np.float64)
    return float(v[0]) if single else v


def luma(image: np.ndarray, kind: str = "y") -> np.ndarray:
    """Luma of an ``(H, W, 3)`` uint8 RGB image, as float64 on the 0-255 scale, rounded to integers as
    MATLAB does for uint8 input.

    Args:
        kind: ``"y"``: Y of ITU-R BT.601 YCbCr (MATLAB ``rgb2ycbcr``, studio range 16-235);
            ``"gray"``: MATLAB ``rgb2gray`` (0.2989 R + 0.5870 G + 0.1140 B, full range).
    """
    rgb = image.astype(np.float64)
    if kind == "y":
        y = 16.0 + rgb @ np.array([65.481, 128.553, 24.966]) / 255.0
    elif kind == "gray":
        y = rgb @ np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    else:
        raise ValueError(f"luma kind must be 'y' or 'gray', got {kind!r}")
    return np.rint(y)
