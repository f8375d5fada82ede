"""Image files and image tensors: the one home for ``uint8 (H, W, 3)`` <-> ``(B, 3, H, W) in [-1, 1]``.

Files are read with Pillow.  Every mode Pillow reads is brought to 8-bit RGB:

- grayscale (``L``, ``1``) is repeated over the three channels;
- palette images are expanded through their palette;
- transparency (``RGBA``, ``LA``, ``PA``, palette/``RGB`` images with a transparent colour) is
  **composited onto a background colour** (white by default), so a cut-out portrait keeps its
  edges instead of showing whatever colour the hidden pixels happen to store;
- 16-bit files (``I;16*`` grayscale, and ``I`` images holding 16-bit values) are scaled with
  ``round(v * 255 / 65535)`` -- taking the low byte or clipping at 255 would wreck them;
- the EXIF orientation tag is applied (phone photos come out upright);
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` are converted by Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from .atomic import atomic_path

__all__ = ["load_image", "save_image", "resize_square", "to_tensor", "to_uint8", "DEFAULT_MIN_SIDE"]

#: Images smaller than this on their shorter side are refused by :func:`load_image` (a face needs pixels).
DEFAULT_MIN_SIDE = 32

_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(img).astype(np.float64)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"32-bit integer image with values in [{a.min():.0f}, {a.max():.0f}]; "
                             "expected 16-bit values in [0, 65535]")
        g = np.round(a * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():
            raise InputError("floating-point image contains NaN or infinite values")
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0  # [0, 1] floats or already 0..255
        g = np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "P" or (mode in ("RGB", "L") and "transparency" in img.info):
        img = img.convert("RGBA")
    elif mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        img = Image.alpha_composite(canvas, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_image(path: str | os.PathLike, *, min_side: int = DEFAULT_MIN_SIDE,
               background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Read an image file as 8-bit RGB.

    Args:
        path: any file Pillow reads (PNG, JPEG, WebP, BMP, TIFF, GIF: first frame, ...).
        min_side: refuse images whose shorter side is below this many pixels.
        background: RGB colour transparent pixels are composited onto.

    Returns:
        ``(H, W, 3)`` uint8 RGB array, upright according to EXIF orientation.

    Raises:
        InputError: the file is missing, is a folder, is not an image, is corrupt or truncated,
            or is smaller than ``min_side``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"image {str(p)!r} does not exist")
    if p.is_dir():
        raise InputError(f"image path {str(p)!r} is a folder, expected an image file")
    try:
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img, background)
    except InputError as e:
        raise InputError(f"image {p.name!r}: {e}") from None
    except UnidentifiedImageError:
        raise InputError(f"{p.name!r} is not an image file Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image {p.name!r} is too large to read: over {Image.MAX_IMAGE_PIXELS:,} pixels ({e}); "
                         "downscale it first") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image {p.name!r} is corrupt or truncated ({e})") from None
    h, w = rgb.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"image {p.name!r} is {w}x{h} px; at least {min_side} px on the shorter side is needed")
    return rgb


def save_image(path: str | os.PathLike, image: np.ndarray | torch.Tensor) -> Path:
    """Write an image atomically; the format follows the file suffix (``.png``, ``.jpg``, ...).

    Args:
        image: ``(H, W, 3)`` or ``(H, W)`` uint8, or a ``(3, H, W)`` / ``(1, 3, H, W)`` tensor in [-1, 1].

    Raises:
        InputError: the folder is missing, the suffix is not an image format, or the array's shape/dtype is wrong.
    """
    if isinstance(image, torch.Tensor):
        if image.dim() == 4 and image.shape[0] != 1:
            raise InputError(f"save_image: expected one image, got a batch of {image.shape[0]}")
        image = to_uint8(image.reshape(image.shape[-3:]))
    a = np.asarray(image)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise InputError(f"save_image: expected an (H, W, 3) uint8 array, got {a.dtype} {a.shape}")
    p = Path(path)
    ext = p.suffix.lower()
    Image.init()
    if ext not in Image.registered_extensions():
        raise InputError(f"save_image: {p.name!r} has no image suffix (use .png, .jpg, .webp, ...)")
    with atomic_path(p) as tmp:
        Image.fromarray(a).save(tmp, format=Image.registered_extensions()[ext])
    return p


def resize_square(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize frames to ``size x size`` px with PIL's Lanczos filter (returned unchanged if already that size).

    Used to score a small model's output against full-size references at one common resolution.

    Args:
        frames: ``(N, H, W, 3)`` uint8 RGB.
        size: the target side in pixels (at least 1).

    Returns:
        ``(N, size, size, 3)`` uint8.

    Raises:
        InputError: not ``(N, H, W, 3)`` uint8, or ``size < 1``.
    """
    a = np.asarray(frames)
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"resize_square: expected (N, H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
    if size < 1:
        raise InputError(f"resize_square: size must be >= 1, got {size}")
    if a.shape[1:3] == (size, size):
        return a
    if len(a) == 0:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in a])


def to_tensor(images: np.ndarray | Sequence[np.ndarray], *, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 RGB image(s) -> network input.

    Args:
        images: ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8, or a sequence of ``(H, W, 3)`` arrays of one size.

    Returns:
        ``(N, 3, H, W)`` tensor in [-1, 1] (``N = 1`` for a single image): ``x / 127.5 - 1``.

    Raises:
        InputError: not uint8, wrong rank or not 3 channels.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError("to_tensor: got an empty list of images")
        shapes = {np.shape(i) for i in images}
        if len(shapes) != 1:
            raise InputError(f"to_tensor: images differ in size: {sorted(shapes)}")
        images = np.stack(images)
    a = np.asarray(images)
    if a.ndim == 3:
        a = a[None]
    if a.dtype != np.uint8 or a.ndim != 4 or a.shape[-1] != 3:
        raise InputError(f"to_tensor: expected (H, W, 3) or (N, H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # e.g. np.asarray of a PIL image; torch warns about read-only memory
        a = a.copy()
    t = torch.from_numpy(a).to(device=device).permute(0, 3, 1, 2)
    return t.to(dtype).div_(127.5).sub_(1.0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Network output -> uint8 RGB image(s), inverse of :func:`to_tensor`.

    Args:
        tensor: ``(3, H, W)`` or ``(N, 3, H, W)`` in [-1, 1] on any device (values outside are clipped).

    Returns:
        ``(H, W, 3)`` or ``(N, H, W, 3)`` uint8 array, ``round((x + 1) * 127.5)``.

    Raises:
        InputError: wrong shape or NaN / infinite values.
    """
    if not isinstance(tensor, torch.Tensor):
        raise InputError(f"to_uint8: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() not in (3, 4) or tensor.shape[-3] != 3:
        raise InputError(f"to_uint8: expected (3, H, W) or (N, 3, H, W), got {tuple(tensor.shape)}")
    t = tensor.detach()
    if not torch.isfinite(t).all():
        raise InputError("to_uint8: tensor contains NaN or infinite values")
    t = ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return t.movedim(-3, -1).cpu().numpy()
