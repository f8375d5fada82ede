"""Face detection on RGB frames with dlib's offline detectors."""

from __future__ import annotations

import dataclasses

import math

import numpy as np

from ..errors import InputError
from . import models

__all__ = ["FaceBox", "detect_faces", "follow_face", "as_rgb_uint8", "as_rgb_frames"]


@dataclasses.dataclass(frozen=True)
class FaceBox:
    """A face rectangle in pixel coordinates (``right``/``bottom`` exclusive) with a detector score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2, (self.top + self.bottom) / 2)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dlib(self):
        import dlib

        return dlib.rectangle(int(round(self.left)), int(round(self.top)), int(round(self.right)) - 1,
                              int(round(self.bottom)) - 1)


def as_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check an ``(H, W, 3)`` uint8 RGB array (contiguous), as dlib needs.

    Raises:
        InputError: another dtype, rank or channel count.
    """
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name}: expected an (H, W, 3) uint8 RGB array, got {a.dtype} {a.shape} "
                         "(use plugtalk.io.images.load_image to read files of any mode)")
    return np.ascontiguousarray(a)


def as_rgb_frames(frames, name: str = "frames") -> list[np.ndarray]:
    """Check a batch of RGB frames: ``(N, H, W, 3)`` uint8, a list of ``(H, W, 3)`` uint8 arrays
    (sizes may differ), or one ``(H, W, 3)`` image (a batch of one).

    Raises:
        InputError: an empty batch, or a frame that is not ``(H, W, 3)`` uint8 (named by index).
    """
    if isinstance(frames, np.ndarray) and frames.ndim == 3:
        return [as_rgb_uint8(frames, name)]
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise InputError(f"{name}: expected (N, H, W, 3) uint8 RGB frames or one (H, W, 3) image, "
                         f"got {frames.dtype} {frames.shape}")
    out = [as_rgb_uint8(f, f"{name}[{i}]") for i, f in enumerate(frames)]
    if not out:
        raise InputError(f"{name}: no frames (expected (N, H, W, 3) uint8 RGB with N >= 1)")
    return out


def detect_faces(image: np.ndarray, upsample: int = 1, method: str = "hog") -> list[FaceBox]:
    """Detect faces, largest first.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        upsample: times the image is up-sampled before detection (finds faces down to ~40 px at 1).
        method: ``"hog"`` (fast, frontal) or ``"cnn"`` (dlib MMOD; slower, more poses).

    Returns:
        Boxes sorted by area, largest first (empty list when no face is found).
    """
    img = as_rgb_uint8(image)
    if method == "hog":
        rects, scores, _ = models.frontal_detector().run(img, upsample, 0.0)
        boxes = [FaceBox(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s)) for r, s in zip(rects, scores)]
    elif method == "cnn":
        dets = models.cnn_detector()(img, upsample)
        boxes = [FaceBox(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, float(d.confidence))
                 for d in dets]
    else:
        raise ValueError(f"detect_faces: method must be 'hog' or 'cnn', got {method!r}")
    h, w = img.shape[:2]
    boxes = [FaceBox(max(b.left, 0), max(b.top, 0), min(b.right, w), min(b.bottom, h), b.score) for b in boxes]
    return sorted((b for b in boxes if b.area > 0), key=lambda b: b.area, reverse=True)


def follow_face(frame: np.ndarray, *, detect_side: int | None = 360, near: FaceBox | None = None,
                upsample: int = 1) -> FaceBox | None:
    """The face to follow in one video frame: detect on a copy scaled down (never up) to ``detect_side``
    px on its shorter side, and pick the largest face, or the one nearest ``near`` (the previous
    frame's box) when several are found.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        detect_side: shorter side of the detection copy in px (``None``: full size).
        near: box to stay close to (face tracking over a clip).
        upsample: detector up-sampling (see :func:`detect_faces`).

    Returns:
        The box in ``frame``'s pixels, or ``None`` when no face is found.
    """
    from PIL import Image

    img = as_rgb_uint8(frame, "frame")
    h, w = img.shape[:2]
    f = 1.0 if detect_side is None else min(1.0, detect_side / min(h, w))
    small = img if f == 1.0 else np.asarray(
        Image.fromarray(img).resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BILINEAR))
    faces = [FaceBox(b.left / f, b.top / f, b.right / f, b.bottom / f, b.score)
             for b in detect_faces(small, upsample=upsample)]
    if not faces:
        return None
    if near is None:
        return faces[0]  # largest
    px, py = near.center
    return min(faces, key=lambda b: math.hypot(b.center[0] - px, b.center[1] - py))
