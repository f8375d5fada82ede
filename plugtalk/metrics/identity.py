"""CSIM: identity similarity between generated frames and a reference face (usually the source image).

CSIM is the cosine similarity of face-recognition embeddings.  FixTalk and most talking-head papers
use ArcFace (Deng et al., CVPR 2019); the default encoder here is dlib's ResNet descriptor
(:class:`~plugtalk.face.identity.DlibIdentityEncoder`), a substitute whose numbers are *not*
comparable to ArcFace CSIM (dlib's embeddings of different people still have cosine ~0.85; the same
person ~0.97).  Pass an :class:`~plugtalk.face.identity.ArcFaceEncoder` to match the papers; results
report the encoder used (:func:`encoder_description`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..face.identity import DlibIdentityEncoder, IdentityEncoder

__all__ = ["cosine_similarity", "csim", "encoder_description"]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``(N, D)`` and ``(N, D)`` (or ``(1, D)``, broadcast) arrays -> ``(N,)``
    in ``[-1, 1]``; NaN rows give NaN."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape[-1] != b.shape[-1]:
        raise InputError(f"cosine_similarity: embedding sizes differ ({a.shape[-1]} vs {b.shape[-1]})")
    num = (a * b).sum(-1)
    return num / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def encoder_description(encoder: IdentityEncoder) -> str:
    """E.g. ``"dlib-resnet128 (substitute for ArcFace, the papers' CSIM model)"``."""
    sub = " (substitute for ArcFace, the papers' CSIM model)" if encoder.is_arcface_substitute else ""
    return f"{encoder.name}{sub}"


def csim(frames, reference, encoder: IdentityEncoder | None = None) -> np.ndarray:
    """Per-frame CSIM.

    Args:
        frames: ``(N, H, W, 3)`` uint8 RGB (or a list / one image): the generated frames.
        reference: one ``(H, W, 3)`` uint8 image (e.g. the source), compared with every frame, or
            ``(N, H, W, 3)`` frames compared pairwise.
        encoder: an :class:`IdentityEncoder` (default: dlib, a substitute for ArcFace - see module doc).

    Returns:
        ``(N,)`` float64 cosine similarities in ``[-1, 1]``; NaN where a frame has no detectable face.

    Raises:
        NoFaceError: the single reference image has no face.
        InputError: bad shapes, or a reference batch of another length.
    """
    enc = encoder or DlibIdentityEncoder()
    e = enc.embed(frames, on_missing="nan", name="frames")
    if isinstance(reference, np.ndarray) and reference.ndim == 3:
        r = enc.embed(reference, on_missing="raise", name="reference")
    else:
        r = enc.embed(reference, on_missing="nan", name="reference")
        if len(r) != len(e):
            raise InputError(f"csim: {len(e)} frames but {len(r)} reference frames")
    return cosine_similarity(e, r)
