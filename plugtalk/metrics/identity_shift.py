"""Identity shift toward the driver: how much of the driving person's identity leaks into the output.

``shift_t = CSIM(output_t, driving_t) - CSIM(source, driving_t)``, averaged over frames with a face in
both (FixTalk's identity-leakage reading, main paper Sec. 5: in cross-reenactment a leak-free animator keeps
the output as (dis)similar to the driver as the source itself is, i.e. shift ~ 0; leakage makes it positive).
CSIM is :func:`~plugtalk.metrics.identity.csim`'s cosine of face embeddings (dlib by default, a substitute
for the papers' ArcFace; pass ``encoder``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError
from .identity import cosine_similarity

__all__ = ["IdentityShift", "identity_shift", "shift_from_embeddings"]


@dataclasses.dataclass
class IdentityShift:
    """Result of :func:`identity_shift`.

    Attributes:
        mean: mean per-frame shift over ``frames`` valid frames (NaN if none); CSIM units, in [-2, 2].
        per_frame: ``(N,)`` shifts (NaN where the output or driving frame has no face).
        output_to_driver, source_to_driver: ``(N,)`` the two CSIM terms.
        frames: number of valid frames.
    """

    mean: float
    per_frame: np.ndarray
    output_to_driver: np.ndarray
    source_to_driver: np.ndarray
    frames: int


def identity_shift(outputs: np.ndarray, source: np.ndarray, driving: np.ndarray, encoder=None) -> IdentityShift:
    """Per-frame identity shift of ``outputs`` toward ``driving`` relative to ``source`` (see the module doc).

    Args:
        outputs: ``(N, H, W, 3)`` uint8 RGB generated frames.
        source: ``(H, W, 3)`` uint8 RGB source image (or crop).
        driving: ``(N, h, w, 3)`` uint8 RGB driving frames, aligned with ``outputs``.
        encoder: an :class:`~plugtalk.face.identity.IdentityEncoder` (default: dlib's ResNet descriptor).

    Raises:
        InputError: ``outputs`` and ``driving`` of different lengths or empty.
        NoFaceError: no face in ``source``.
    """
    from ..face.identity import DlibIdentityEncoder

    outputs, driving = np.asarray(outputs), np.asarray(driving)
    if outputs.ndim != 4 or driving.ndim != 4 or len(outputs) != len(driving) or len(outputs) == 0:
        raise InputError(f"identity_shift: expected equally long (N, H, W, 3) outputs and driving frames, got "
                         f"{outputs.shape} and {driving.shape}")
    enc = encoder or DlibIdentityEncoder()
    e_src = enc.embed(np.asarray(source), on_missing="raise", name="source")
    e_drv = enc.embed(driving, on_missing="nan", name="driving")
    return shift_from_embeddings(enc.embed(outputs, on_missing="nan", name="output"), e_src, e_drv)


def shift_from_embeddings(outputs: np.ndarray, source: np.ndarray, driving: np.ndarray) -> IdentityShift:
    """:func:`identity_shift` from face embeddings: ``outputs (N, D)``, ``source (1, D)``, ``driving (N, D)``
    (NaN rows: no face), e.g. to compare several outputs of one pair without embedding the pair again."""
    outputs, driving = np.atleast_2d(outputs), np.atleast_2d(driving)
    if outputs.shape != driving.shape:
        raise InputError(f"identity_shift: {outputs.shape} output embeddings vs {driving.shape} driving embeddings")
    to_driver = cosine_similarity(outputs, driving)
    source_to_driver = cosine_similarity(source, driving)
    shift = to_driver - source_to_driver
    valid = np.isfinite(shift)
    mean = float(shift[valid].mean()) if valid.any() else float("nan")
    return IdentityShift(mean, shift, to_driver, source_to_driver, int(valid.sum()))
