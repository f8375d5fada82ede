"""CPBD, the cumulative probability of blur detection (no-reference sharpness; higher is sharper).

Narvekar and Karam, "A No-Reference Image Blur Metric Based on the Cumulative Probability of Blur
Detection (CPBD)", IEEE Transactions on Image Processing 20(9), 2011:

1. The luma image (MATLAB ``rgb2gray``, 0-255) is cut into 64x64 blocks; a block is an *edge block*
   when more than 0.2% of its pixels are Canny edges (§III).
2. Edge pixels for width measurement are Sobel edges; the width ``w(e)`` of an edge is the distance
   between the local intensity extrema on either side of it along the row (Marziliano et al. 2002),
   measured at edges whose gradient is within 22.5 degrees of horizontal.
3. Each edge in an edge block gets a probability of blur detection (eq. 5)
   ``P_BLUR = 1 - exp(-|w(e) / w_JNB(e)|^beta)`` with ``beta = 3.6`` and the just-noticeable-blur width
   ``w_JNB = 5`` for block contrast ``<= 50`` and ``3`` for contrast ``> 50`` (contrast: max - min of
   the block's luma).
4. CPBD (eq. 7) is the fraction of those edges with ``P_BLUR <= P_JNB = 1 - exp(-1) ~= 63%``, i.e. of
   edges no wider than their just-noticeable-blur width.

Edge-detector settings follow MATLAB's ``edge`` defaults used by the authors' software: Canny with
sigma = sqrt(2), high threshold where 70% of pixels have a weaker gradient (64-bin histogram),
low = 0.4 x high;
Sobel edges where the squared gradient magnitude exceeds 4x its mean, thinned to maxima across the
dominant gradient direction.
Written from the paper with scikit-image/scipy building blocks.
"""

from __future__ import annotations

import numpy as np
from .._optional import require
require("scipy", "eval", "the metrics (CPBD)")
from scipy import ndimage
require("skimage", "eval", "the metrics (CPBD)")
from skimage.feature import canny

from ._images import image_batch, luma, per_image_result

__all__ = ["cpbd", "edge_widths"]

BLOCK = 64
EDGE_BLOCK_FRACTION = 0.002
BETA = 3.6
P_JNB = 1.0 - np.exp(-1.0)


def _run_end(b: np.ndarray) -> np.ndarray:
    """For a boolean ``(H, M)`` array: length of the run of True ending at each position (0 where False)."""
    idx = np.arange(b.shape[1])
    last_false = np.maximum.accumulate(np.where(b, -1, idx[None, :]), axis=1)
    return idx[None, :] - last_false


def _run_start(b: np.ndarray) -> np.ndarray:
    return _run_end(b[:, ::-1])[:, ::-1]


def _sobel_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MATLAB ``edge(I, 'sobel')``: squared gradient magnitude above 4x its mean, thinned to local maxima
    across the dominant gradient direction.  Returns ``(edges, gx, gy)``."""
    gx = ndimage.sobel(img, axis=1, mode="nearest") / 8.0
    gy = ndimage.sobel(img, axis=0, mode="nearest") / 8.0
    b = gx * gx + gy * gy
    bp = np.pad(b, 1, mode="edge")
    horiz_max = (b > bp[1:-1, :-2]) & (b > bp[1:-1, 2:])
    vert_max = (b > bp[:-2, 1:-1]) & (b > bp[2:, 1:-1])
    ax, ay = np.abs(gx), np.abs(gy)
    edges = (b > 4.0 * b.mean()) & (((ax >= ay) & horiz_max) | ((ay >= ax) & vert_max))
    return edges, gx, gy


def _sobel_edges_python_cpbd(img: np.ndarray) -> np.ndarray:
    """The edge map of the PyPI ``cpbd`` package (used by many talking-head evaluation scripts): the
    squared horizontal Sobel response kept where it exceeds twice its root-mean-square (an un-squared
    threshold, far lower than MATLAB's), then kept where it is a strict local maximum along the row
    or along the column (zero beyond the border)."""
    s = (ndimage.sobel(img, axis=1, mode="reflect") / 8.0) ** 2
    s[s <= 2.0 * np.sqrt(s.mean())] = 0.0
    sp = np.pad(s, 1)
    return ((s > sp[1:-1, :-2]) & (s > sp[1:-1, 2:])) | ((s > sp[:-2, 1:-1]) & (s > sp[2:, 1:-1]))


def edge_widths(gray: np.ndarray, edges: str = "matlab") -> np.ndarray:
    """Marziliano edge widths of the (near-vertical) Sobel edges of a 2-D luma image (see the module docstring).

    Returns:
        ``(H, W)`` float64 array: the width in pixels at measured edge pixels, 0 elsewhere (including
        the one-pixel border and edges whose gradient is not within 22.5 degrees of horizontal).
    """
    img = np.asarray(gray, dtype=np.float64)
    edges = _sobel_edges(img)[0] if edges == "matlab" else _sobel_edges_python_cpbd(img)
    gy, gx = np.gradient(img)
    horizontal = np.abs(gy) <= np.tan(np.pi / 8) * np.abs(gx)
    d = np.diff(img, axis=1)  # d[:, q] = I[:, q+1] - I[:, q]
    h, w = img.shape
    widths = np.zeros_like(img)
    rows, cols = np.nonzero(edges & horizontal)
    keep = (cols >= 1) & (cols <= w - 2) & (rows >= 1) & (rows <= h - 2)
    rows, cols = rows[keep], cols[keep]
    rising = gx[rows, cols] > 0
    for sign, sel in ((1.0, rising), (-1.0, ~rising)):
        up = sign * d > 0  # intensity keeps moving away from the edge's low side going right
        # the edge spans from the extremum left of it (walking left from c-1 while the intensity
        # keeps falling for a rising edge) to the extremum right of it (walking right from c+1).
        steps_left = np.pad(_run_end(up), ((0, 0), (1, 0)))      # steps_left[:, p] = run ending at p-1
        steps_right = np.pad(_run_start(up), ((0, 0), (0, 1)))   # steps_right[:, p] = run starting at p
        r, c = rows[sel], cols[sel]
        left_end = (c - 1) - steps_left[r, c - 1]
        right_end = (c + 1) + steps_right[r, c + 1]
        widths[r, c] = right_end - left_end
    return widths


def _cpbd_gray(img: np.ndarray, edges: str) -> float:
    h, w = img.shape
    bh, bw = h // BLOCK, w // BLOCK
    if bh == 0 or bw == 0:
        return float("nan")
    # MATLAB's automatic Canny thresholds: the gradient magnitude, scaled to [0, 1], is histogrammed in
    # 64 bins; the high threshold is the first bin edge below which more than 70% of pixels lie.
    mag = np.hypot(*(ndimage.sobel(ndimage.gaussian_filter(img, np.sqrt(2)), axis=a) for a in (0, 1)))
    peak = float(mag.max())
    if peak <= 0:
        return float("nan")
    counts, _ = np.histogram(mag / peak, bins=64, range=(0.0, 1.0))
    high = (int(np.argmax(np.cumsum(counts) > 0.7 * mag.size)) + 1) / 64 * peak
    canny_edges = canny(img, sigma=np.sqrt(2), low_threshold=0.4 * high, high_threshold=high)
    widths = edge_widths(img, edges)
    p_blur = []
    for i in range(bh):
        for j in range(bw):
            sl = np.s_[i * BLOCK:(i + 1) * BLOCK, j * BLOCK:(j + 1) * BLOCK]
            if np.count_nonzero(canny_edges[sl]) <= EDGE_BLOCK_FRACTION * BLOCK * BLOCK:
                continue
            bw_ = widths[sl]
            bw_ = bw_[bw_ > 0]
            if bw_.size == 0:
                continue
            block = img[sl]
            w_jnb = 5.0 if block.max() - block.min() <= 50 else 3.0
            p_blur.append(1.0 - np.exp(-np.abs(bw_ / w_jnb) ** BETA))
    if not p_blur:
        return float("nan")
    p = np.concatenate(p_blur)
    return float(np.mean(p <= P_JNB + 1e-9))


def cpbd(images, edges: str = "python-cpbd"):
    """CPBD sharpness of RGB frames, in ``[0, 1]`` (higher = sharper).  Reference: the module docstring.

    Args:
        images: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 RGB; only whole 64x64 blocks are used.
        edges: ``"python-cpbd"`` (default): the edge map of the PyPI ``cpbd`` package, which talking-head
            papers' evaluation code calls (FixTalk/EDTalk report 0.22-0.28, the range this setting gives
            on sharp face crops here); ``"matlab"``: Sobel edges as MATLAB's ``edge(I, 'sobel')``, the
            CPBD authors' software, whose higher threshold drops weak edges and gives higher scores on
            sharp frames (e.g. 0.50 instead of 0.18 on a 256 px face crop here).

    Returns:
        A float per image (an ``(N,)`` array for a batch); NaN when the image has no measurable edge
        (e.g. a flat image) or is smaller than 64x64 px.

    Raises:
        InputError: not RGB uint8.
    """
    if edges not in ("matlab", "python-cpbd"):
        raise ValueError(f"cpbd: edges must be 'matlab' or 'python-cpbd', got {edges!r}")
    batch, single = image_batch(images, "images")
    return per_image_result([_cpbd_gray(luma(im, "gray"), edges) for im in batch], single)
