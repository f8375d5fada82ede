"""Full-reference fidelity: PSNR and SSIM (scikit-image's implementations) on RGB uint8 frames."""

from __future__ import annotations

import numpy as np
from .._optional import require
require("skimage", "eval", "the metrics (PSNR / SSIM)")
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ._images import paired_batches, per_image_result

__all__ = ["psnr", "ssim"]


def psnr(pred, ref):
    """Peak signal-to-noise ratio, in dB, over all pixels and the 3 channels (peak 255).

    Args:
        pred, ref: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB, same shape.

    Returns:
        A float for one image pair, an ``(N,)`` array for batches; ``inf`` for identical images.

    Raises:
        InputError: not RGB uint8, or shapes differ.
    """
    p, r, single = paired_batches(pred, ref)
    with np.errstate(divide="ignore"):
        vals = [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(p, r)]
    return per_image_result(vals, single)


def ssim(pred, ref):
    """Structural similarity (Wang et al., IEEE TIP 2004) of RGB frames, mean over the 3 channels.

    Uses the paper's settings: 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
    covariances, dynamic range 255.

    Args:
        pred, ref: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB, same shape, at least 7x7 px.

    Returns:
        A float in ``[-1, 1]`` (1 for identical images) for one pair, an ``(N,)`` array for batches.

    Raises:
        InputError: not RGB uint8, or shapes differ.
    """
    p, r, single = paired_batches(pred, ref)
    vals = [structural_similarity(b, a, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for a, b in zip(p, r)]
    return per_image_result(vals, single)
