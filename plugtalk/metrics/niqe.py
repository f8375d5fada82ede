"""NIQE, the Natural Image Quality Evaluator (no-reference; lower is better).

Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer", IEEE Signal
Processing Letters 20(3), 2013.  An image's natural-scene statistics are fitted on 96x96 patches at
two scales and compared with a multivariate Gaussian model of pristine images:

1. MSCN coefficients (eq. 1-3): ``(I - mu) / (sigma + 1)`` with ``mu``, ``sigma`` the local mean and
   standard deviation under a 7x7 Gaussian window (replicated borders).
2. Per patch, 18 features (§III-A/B): an asymmetric generalised Gaussian (AGGD) fit of the MSCN values
   (shape, mean of left/right scales) and, for the products of horizontally, vertically and both
   diagonally adjacent MSCN values, AGGD shape, mean, left and right scale (moment matching).
3. The same at half resolution (MATLAB ``imresize(., 0.5)``: bicubic with antialiasing), giving 36
   features per patch.
4. Quality (eq. 4): ``sqrt((nu1 - nu2)^T ((S1 + S2) / 2)^+ (nu1 - nu2))`` between the pristine model
   ``(nu1, S1)`` and the mean/covariance ``(nu2, S2)`` of the image's patch features.

The pristine model is the LIVE laboratory's published one (``plugtalk/assets/niqe_pris_params.npz``,
see ``NIQE_PARAMS_NOTICE.md`` there).  Like the reference MATLAB code and basicsr/pyiqa, the score is
computed on the luma channel (Y of BT.601 YCbCr by default), rounded to integers, with the image
cropped to whole 96x96 patches.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
from .._optional import require
require("scipy", "eval", "the metrics (NIQE)")
from scipy import ndimage
from scipy.special import gamma

from ..errors import InputError
from ._images import image_batch, luma, per_image_result

__all__ = ["niqe", "niqe_features", "pristine_model", "matlab_imresize_half"]

PATCH = 96
_SHAPE_GRID = np.arange(0.2, 10.0 + 5e-4, 0.001)  # candidate AGGD shapes (as in the reference code)
_RATIO_GRID = gamma(2.0 / _SHAPE_GRID) ** 2 / (gamma(1.0 / _SHAPE_GRID) * gamma(3.0 / _SHAPE_GRID))


@lru_cache(maxsize=1)
def pristine_model() -> dict[str, np.ndarray]:
    """The published pristine NIQE model: ``mu`` (36,), ``cov`` (36, 36), ``window`` (7, 7)."""
    with resources.files("plugtalk").joinpath("assets/niqe_pris_params.npz").open("rb") as f:
        d = np.load(f)
        model = {"mu": d["mu_pris_param"].reshape(36).astype(np.float64),
                 "cov": d["cov_pris_param"].astype(np.float64),
                 "window": d["gaussian_window"].astype(np.float64)}
    for v in model.values():
        v.setflags(write=False)
    return model


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``imresize`` 'bicubic')."""
    ax = np.abs(x)
    return np.where(ax <= 1, 1.5 * ax**3 - 2.5 * ax**2 + 1,
                    np.where(ax <= 2, -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2, 0.0))


def _halve_axis(x: np.ndarray, axis: int) -> np.ndarray:
    # MATLAB maps output j (0-based) to input position 2j + 0.5; antialiasing stretches the kernel by 2,
    # so 8 taps at distances 3.5 .. 0.5 .. 3.5 contribute, with mirrored ('symmetric') borders.
    taps = _cubic(np.arange(-3.5, 4.0, 1.0) / 2.0)
    taps /= taps.sum()
    n = x.shape[axis]
    out_n = -(-n // 2)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (3, 2 * out_n + 4 - n)
    xp = np.pad(x, pad, mode="symmetric")
    out = 0.0
    for k, w in enumerate(taps):
        out = out + w * np.take(xp, np.arange(k, k + 2 * out_n, 2), axis=axis)
    return out


def matlab_imresize_half(image: np.ndarray) -> np.ndarray:
    """MATLAB's ``imresize(image, 0.5)`` (bicubic, antialiasing on) of a 2-D float array, no rounding."""
    return _halve_axis(_halve_axis(np.asarray(image, dtype=np.float64), 0), 1)


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    mu = ndimage.correlate(img, window, mode="nearest")
    var = ndimage.correlate(img * img, window, mode="nearest") - mu * mu
    return (img - mu) / (np.sqrt(np.abs(var)) + 1.0)


def _aggd_fit(x: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching AGGD fit (Lasmar et al. 2009): shape alpha, left and right scales."""
    x = x.ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(np.mean(x[x < 0] ** 2)) if np.any(x < 0) else np.nan
        right = np.sqrt(np.mean(x[x > 0] ** 2)) if np.any(x > 0) else np.nan
        g = left / right
        r = np.mean(np.abs(x)) ** 2 / np.mean(x * x)
        r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    if not np.isfinite(r_norm):
        return np.nan, np.nan, np.nan
    alpha = float(_SHAPE_GRID[np.argmin((_RATIO_GRID - r_norm) ** 2)])
    k = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, float(left * k), float(right * k)


def _patch_features(mscn: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd_fit(mscn)
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        alpha, bl, br = _aggd_fit(mscn * np.roll(mscn, shift, axis=(0, 1)))
        mean = (br - bl) * gamma(2.0 / alpha) / gamma(1.0 / alpha) if np.isfinite(alpha) else np.nan
        feats += [alpha, mean, bl, br]
    return feats


def niqe_features(gray: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """The 36 NIQE features of each ``patch x patch`` patch of a 2-D luma image on the 0-255 scale.

    Returns:
        ``(P, 36)`` float64, one row per whole patch (the image is cropped to whole patches); features
        that cannot be fitted (e.g. a flat patch) are NaN.

    Raises:
        InputError: the image is smaller than one patch.
    """
    img = np.asarray(gray, dtype=np.float64)
    ph, pw = img.shape[0] // patch, img.shape[1] // patch
    if ph == 0 or pw == 0:
        raise InputError(f"NIQE needs at least {patch}x{patch} px, got {img.shape[1]}x{img.shape[0]}")
    img = img[:ph * patch, :pw * patch]
    window = pristine_model()["window"]
    per_scale = []
    for scale in (1, 2):
        m = _mscn(img, window)
        s = patch // scale
        per_scale.append(np.array([_patch_features(m[i * s:(i + 1) * s, j * s:(j + 1) * s])
                                   for i in range(ph) for j in range(pw)]))
        if scale == 1:
            img = matlab_imresize_half(img)
    return np.concatenate(per_scale, axis=1)


def _quality(feats: np.ndarray) -> float:
    model = pristine_model()
    with np.errstate(invalid="ignore"):
        mu = np.nanmean(feats, axis=0) if not np.all(np.isnan(feats)) else np.full(36, np.nan)
    rows = feats[~np.isnan(feats).any(axis=1)]
    if rows.shape[0] == 0 or np.isnan(mu).any():
        return float("nan")
    cov = np.cov(rows, rowvar=False) if rows.shape[0] > 1 else np.zeros((36, 36))
    d = model["mu"] - mu
    q = d @ np.linalg.pinv((model["cov"] + cov) / 2) @ d
    return float(np.sqrt(max(q, 0.0)))


def niqe(images, channel: str = "y"):
    """NIQE score of RGB frames (lower = more natural).  Reference: see the module docstring.

    Args:
        images: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB, each at least 96x96 px (a 256 px frame
            uses its top-left 192x192 px: 4 patches, so per-frame scores are noisy; average over frames).
        channel: ``"y"`` (BT.601 Y, as basicsr/pyiqa) or ``"gray"`` (MATLAB ``rgb2gray``).

    Returns:
        A float per image (an ``(N,)`` array for a batch); NaN when no patch has usable statistics
        (e.g. a flat image).

    Raises:
        InputError: not RGB uint8, or smaller than 96x96 px.
    """
    batch, single = image_batch(images, "images")
    return per_image_result([_quality(niqe_features(luma(im, channel))) for im in batch], single)
