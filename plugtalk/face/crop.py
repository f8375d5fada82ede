"""FOMM / LIA-style face crops: one fixed square box per clip, crop + resize, and paste-back.

One-shot animators (FOMM, LIA, EDTalk, DPE) are trained on clips cropped with a *single* square box
per clip that holds the whole head with some hair and neck over the clip's motion; the face then moves
inside a still frame, as it did in the camera.  :func:`clip_crop_box` computes that box from the
clip's face boxes:

- face size ``s`` = median over frames of the face box's longer side;
- the box side is ``scale * s`` (2.0), grown up to ``max_scale * s`` (2.4) so the head stays inside
  while it moves (head motion range + ``scale * s``);
- it is centred on the middle of the range the face centre covers, raised by ``shift_up * s``
  (0.18: forehead and hair are taller than the neck shown below the chin);
- it is shifted to stay inside the frame, shrunk (not below ``min_scale * s``) when the frame is
  already a tight crop, and only the rest is padded (edge pixels repeated) by
  :func:`crop_and_resize`.

A source portrait gets the same box from its one face (:func:`portrait_box`).  The crop is resized
to ``size`` (256) with Lanczos filtering; :func:`paste_back` puts an animated crop back into the
original frame through a feathered (soft-edged) mask.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, NoFaceError
from .detect import FaceBox, as_rgb_uint8, detect_faces

__all__ = ["CropBox", "clip_crop_box", "portrait_box", "crop_and_resize", "crop_portrait", "paste_back",
           "FaceTrack", "split_face_track", "face_size"]


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square crop in source pixels: columns ``left .. left + size``, rows ``top .. top + size``
    (end exclusive).  It may extend past the frame; the outside is edge-padded when cropping."""

    left: int
    top: int
    size: int

    @property
    def right(self) -> int:
        return self.left + self.size

    @property
    def bottom(self) -> int:
        return self.top + self.size

    def as_xyxy(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``, the layout of the shared data's ``MANIFEST.json`` ``crop.box``."""
        return (self.left, self.top, self.right, self.bottom)

    def padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Pixels outside a ``height x width`` frame on the ``(left, top, right, bottom)`` sides."""
        return (max(0, -self.left), max(0, -self.top), max(0, self.right - width), max(0, self.bottom - height))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def face_size(box: FaceBox) -> float:
    """A face's size in pixels: the longer side of its box."""
    return float(max(box.width, box.height))


def _fit(center: float, side: float, extent: int) -> float:
    """Left/top edge of a ``side``-long span centred on ``center``, moved to stay inside ``[0, extent)``
    (or, when longer than ``extent``, to cover it while keeping the centre as close as possible)."""
    lo, hi = min(0.0, extent - side), max(0.0, extent - side)
    return float(np.clip(center - side / 2, lo, hi))


def clip_crop_box(boxes: Sequence[FaceBox | None], frame_size: tuple[int, int], *, scale: float = 2.0,
                  shift_up: float = 0.18, min_scale: float = 1.3, max_scale: float = 2.4,
                  name: str = "clip") -> CropBox:
    """One square crop box for a whole clip from its per-frame face boxes.

    Args:
        boxes: face box per frame (``None`` where no face was detected or the frame was not sampled).
        frame_size: ``(height, width)`` of the frames in pixels.
        scale: box side over face size (2.0: whole head, some hair and neck).
        shift_up: the box centre sits this many face sizes above the face centre.
        min_scale, max_scale: limits for shrinking (frame already tight) and growing (head motion).
        name: used in the error message.

    Returns:
        The box in source pixels (integers; may extend past the frame).

    Raises:
        NoFaceError: no box at all.
        InputError: a bad ``frame_size`` or scales out of order.
    """
    faces = [b for b in boxes if b is not None]
    if not faces:
        raise NoFaceError(f"no face detected in {name}")
    h, w = (int(v) for v in frame_size)
    if h <= 0 or w <= 0:
        raise InputError(f"frame_size must be positive (height, width), got {frame_size}")
    if not (0 < min_scale <= scale <= max_scale):
        raise InputError(f"need 0 < min_scale <= scale <= max_scale, got {min_scale}, {scale}, {max_scale}")
    s = float(np.median([face_size(b) for b in faces]))
    cx = np.array([b.center[0] for b in faces])
    cy = np.array([b.center[1] for b in faces])
    # robust motion range: ignore the most extreme 2 % (detector jitter) when there are many frames
    q = (2, 98) if len(faces) >= 50 else (0, 100)
    x0, x1 = np.percentile(cx, q)
    y0, y1 = np.percentile(cy, q)
    motion = max(x1 - x0, y1 - y0)
    side = float(np.clip(scale * s + motion, scale * s, max_scale * s))
    side = min(side, max(min(h, w), min_scale * s))  # tight source: shrink, but keep min_scale
    center_x = (x0 + x1) / 2
    center_y = (y0 + y1) / 2 - shift_up * s
    left = _fit(center_x, side, w)
    top = _fit(center_y, side, h)
    size = int(round(side))
    return CropBox(int(round(left)), int(round(top)), max(size, 1))


def portrait_box(image: np.ndarray, *, name: str = "source image", scale: float = 2.0, shift_up: float = 0.18,
                 min_scale: float = 1.3, upsample: int = 1) -> CropBox:
    """Crop box for a single portrait (its largest face), with the clip rules of :func:`clip_crop_box`.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        name: the file or image name for the error message.

    Raises:
        NoFaceError: no face detected (the message names ``name``).
    """
    img = as_rgb_uint8(image, name)
    faces = detect_faces(img, upsample=upsample)
    if not faces:
        raise NoFaceError(f"no face detected in {name} ({img.shape[1]}x{img.shape[0]} px); "
                          "give a portrait with a visible frontal face")
    return clip_crop_box([faces[0]], img.shape[:2], scale=scale, shift_up=shift_up, min_scale=min_scale,
                         max_scale=scale, name=name)


def crop_and_resize(frame: np.ndarray, box: CropBox, size: int = 256) -> np.ndarray:
    """Cut ``box`` out of ``frame`` (edge-padding where it leaves the frame) and resize it.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        box: square crop box in ``frame``'s pixels.
        size: output side in pixels.

    Returns:
        ``(size, size, 3)`` uint8 RGB (Lanczos resampling).
    """
    img = as_rgb_uint8(frame, "frame")
    h, w = img.shape[:2]
    if size < 1:
        raise InputError(f"crop size must be >= 1, got {size}")
    x0, y0 = max(box.left, 0), max(box.top, 0)
    x1, y1 = min(box.right, w), min(box.bottom, h)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"crop box {box.as_xyxy()} does not overlap the {w}x{h} frame")
    region = img[y0:y1, x0:x1]
    pl, pt, pr, pb = box.padding(h, w)
    if pl or pt or pr or pb:
        region = np.pad(region, ((pt, pb), (pl, pr), (0, 0)), mode="edge")
    if region.shape[0] == size and region.shape[1] == size:
        return np.ascontiguousarray(region)
    return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.LANCZOS))


def crop_portrait(image: np.ndarray | str | os.PathLike, size: int = 256, *, name: str | None = None,
                  **box_kwargs) -> tuple[np.ndarray, CropBox]:
    """Detect the face of a source portrait, crop it FOMM-style and resize.

    Args:
        image: ``(H, W, 3)`` uint8 RGB, or an image file (read with :func:`plugtalk.io.images.load_image`).
        size: output side in pixels.
        name: name used in errors (defaults to the file name).
        **box_kwargs: passed to :func:`portrait_box` (``scale``, ``shift_up``, ``min_scale``, ``upsample``).

    Returns:
        ``(crop, box)``: ``(size, size, 3)`` uint8 and the box in the image's pixels (for :func:`paste_back`).

    Raises:
        NoFaceError: no face in the image (names the file).
        InputError: unreadable file or bad array.
    """
    if isinstance(image, (str, os.PathLike)):
        from ..io.images import load_image

        name = name or Path(image).name
        image = load_image(image)
    box = portrait_box(image, name=name or "source image", **box_kwargs)
    return crop_and_resize(image, box, size), box


def _feather_mask(side: int, feather: float) -> np.ndarray:
    """``(side, side)`` float mask: 1 inside, a smoothstep ramp to 0 over ``feather * side`` at the edges."""
    if feather <= 0:
        return np.ones((side, side), np.float32)
    ramp = max(feather * side, 1.0)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) + 0.5
    m = np.clip(d / ramp, 0.0, 1.0)
    m = m * m * (3 - 2 * m)  # smoothstep: no visible kink where the ramp meets the flat part
    return np.outer(m, m)


def paste_back(original: np.ndarray, crop, box: CropBox, *, feather: float = 0.1) -> np.ndarray:
    """Blend an animated crop back into the frame it was cut from.

    The crop is resized to the box, and mixed in through a mask that is 1 in the middle and falls
    smoothly to 0 over the outer ``feather`` fraction of the box, so no seam shows.  Parts of the box
    outside the frame (padding) are dropped.

    Args:
        original: ``(H, W, 3)`` uint8 RGB frame the box refers to.
        crop: ``(S, S, 3)`` uint8 RGB, or a ``(3, S, S)`` / ``(1, 3, S, S)`` tensor in [-1, 1].
        box: the crop box used to make the source crop.
        feather: width of the soft edge as a fraction of the box side (0 = hard paste).

    Returns:
        New ``(H, W, 3)`` uint8 frame (``original`` is not modified).

    Raises:
        InputError: bad shapes, or a box that does not overlap the frame.
    """
    frame = as_rgb_uint8(original, "original frame")
    if not isinstance(crop, np.ndarray):
        from ..io.images import to_uint8

        if crop.dim() == 4 and crop.shape[0] != 1:
            raise InputError(f"paste_back: expected one animated crop, got a batch of {crop.shape[0]}")
        crop = to_uint8(crop.reshape(crop.shape[-3:]))
    crop = as_rgb_uint8(crop, "animated crop")
    if crop.shape[0] != crop.shape[1]:
        raise InputError(f"paste_back: the animated crop must be square, got {crop.shape[1]}x{crop.shape[0]}")
    if not 0 <= feather <= 0.5:
        raise InputError(f"paste_back: feather must be in [0, 0.5], got {feather}")
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(box.left, 0), max(box.top, 0), min(box.right, w), min(box.bottom, h)
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"crop box {box.as_xyxy()} does not overlap the {w}x{h} frame")
    big = crop if crop.shape[0] == box.size else np.asarray(
        Image.fromarray(crop).resize((box.size, box.size), Image.Resampling.LANCZOS))
    mask = _feather_mask(box.size, feather)
    sy, sx = slice(y0 - box.top, y1 - box.top), slice(x0 - box.left, x1 - box.left)
    m = mask[sy, sx, None]
    out = frame.copy()
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = m * big[sy, sx].astype(np.float32) + (1 - m) * region
    out[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out


@dataclasses.dataclass
class FaceTrack:
    """A run of frames with one continuously visible face.

    Attributes:
        start: index of the first frame (inclusive).
        boxes: one box per frame from ``start``; misses inside the run are linearly interpolated.
        detected: how many of those boxes came from the detector (the rest are interpolated).
    """

    start: int
    boxes: list[FaceBox]
    detected: int

    @property
    def end(self) -> int:
        """Index after the last frame."""
        return self.start + len(self.boxes)

    def __len__(self) -> int:
        return len(self.boxes)


def _lerp(a: FaceBox, b: FaceBox, t: float) -> FaceBox:
    return FaceBox(*(float(x + (y - x) * t) for x, y in zip((a.left, a.top, a.right, a.bottom, a.score),
                                                            (b.left, b.top, b.right, b.bottom, b.score))))


def split_face_track(boxes: Sequence[FaceBox | None], *, max_gap: int, max_jump: float = 0.5) -> list[FaceTrack]:
    """Split per-frame detections into continuous face tracks.

    A track is cut where no face was detected for more than ``max_gap`` consecutive frames (frames
    that were not sampled count as misses), or where the face centre jumps by more than
    ``max_jump`` face sizes between two consecutive detections (a shot change or another person).
    Inside a track, the frames between detections get linearly interpolated boxes.  A track runs
    from its first to its last detection.

    Args:
        boxes: per-frame face box or ``None``.
        max_gap: longest run of missed frames bridged by interpolation.
        max_jump: largest centre move between consecutive detections, in face sizes.

    Returns:
        Tracks in frame order.
    """
    tracks: list[FaceTrack] = []
    cur: FaceTrack | None = None
    last_i, last_b = -1, None
    for i, b in enumerate(boxes):
        if b is None:
            continue
        if cur is not None:
            gap = i - last_i - 1
            dx, dy = b.center[0] - last_b.center[0], b.center[1] - last_b.center[1]
            jump = float(np.hypot(dx, dy)) / max(face_size(last_b), face_size(b), 1e-6)
            if gap > max_gap or jump > max_jump:
                tracks.append(cur)
                cur = None
            else:
                for k in range(1, gap + 1):
                    cur.boxes.append(_lerp(last_b, b, k / (gap + 1)))
                cur.boxes.append(b)
                cur.detected += 1
        if cur is None:
            cur = FaceTrack(start=i, boxes=[b], detected=1)
        last_i, last_b = i, b
    if cur is not None:
        tracks.append(cur)
    return tracks
