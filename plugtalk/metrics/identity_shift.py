"""Identity shift toward the driver: the direct measure of identity leakage in cross-reenactment.

CSIM to the source alone does not isolate leakage: an output can lose the source's identity by becoming
blurry or generic just as well as by taking on the driver's.  The identity shift compares each output
frame with the *driving* frame that produced it, relative to how similar the source already was to
that driving frame::

    shift_t = CSIM(output_t, driving_t) - CSIM(source, driving_t)

(FixTalk, Sec. 3.2, describes identity leakage as the driven image's identity leaking into the
source; the paper gives no formula for it: this one is ours.  ``plugtalk probe``'s ``identity_shift``
is another quantity, ``CSIM(output, driving) - CSIM(output, source)``, for ranking patched taps.)

``> 0``: the output looks more like the driver than the source does (the driver's identity leaked in);
``0``: a source driven by itself, or a copy of the source whatever the driver; ``< 0``: the output moved
away from the driver.  CSIM is the cosine of face-recognition embeddings (dlib's ResNet by default, a
substitute for the papers' ArcFace; see :mod:`plugtalk.metrics.identity`), so the shift lies in
``[-2, 2]``; an output that *is* the driving frame scores ``1 - CSIM(source, driving)``, about 0.1-0.15
with dlib's embeddings (different people still have cosine ~0.85).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..face.identity import DlibIdentityEncoder, IdentityEncoder
from .identity import cosine_similarity

__all__ = ["identity_shift", "identity_shift_from_embeddings"]


def identity_shift_from_embeddings(output: np.ndarray, source: np.ndarray, driving: np.ndarray
                                   ) -> dict[str, np.ndarray]:
    """Per-frame identity shift from identity embeddings (see the module docstring).

    Args:
        output: ``(N, D)`` embeddings of the generated frames (NaN rows: no face found).
        source: ``(D,)`` or ``(1, D)`` embedding of the source image (NaN: no face).
        driving: ``(N, D)`` embeddings of the driving frames, row ``t`` the driver of output ``t``.

    Returns:
        ``{"shift": (N,), "csim_output_driving": (N,), "csim_source_driving": (N,)}``, float64; NaN where
        the output, driving frame or source has no face.

    Raises:
        InputError: ``output`` and ``driving`` differ in length or embedding size.
    """
    o = np.atleast_2d(np.asarray(output, np.float64))
    d = np.atleast_2d(np.asarray(driving, np.float64))
    s = np.atleast_2d(np.asarray(source, np.float64))
    if o.shape != d.shape:
        raise InputError(f"identity shift: {o.shape} output embeddings but {d.shape} driving embeddings")
    if s.shape != (1, o.shape[1]):
        raise InputError(f"identity shift: source embedding must be ({o.shape[1]},), got {s.shape}")
    od = cosine_similarity(o, d)
    sd = cosine_similarity(np.broadcast_to(s, d.shape), d)
    return {"shift": od - sd, "csim_output_driving": od, "csim_source_driving": sd}


def identity_shift(output, source, driving, encoder: IdentityEncoder | None = None, *,
                   output_boxes=None, driving_boxes=None) -> dict[str, np.ndarray]:
    """Per-frame identity shift toward the driver, ``CSIM(output_t, driving_t) - CSIM(source, driving_t)``.

    The general form: any generated frames, their driving frames and the source image, at any size (they
    are embedded separately; compare at one resolution, e.g. ``plugtalk eval --resize 256``).

    Args:
        output: ``(N, H, W, 3)`` uint8 RGB generated frames (or a list of ``(H, W, 3)``).
        source: ``(H', W', 3)`` uint8 RGB source image.
        driving: ``(N, H'', W'', 3)`` uint8 RGB driving frames, frame ``t`` drove output ``t``.
        encoder: an :class:`~plugtalk.face.identity.IdentityEncoder` (default: dlib's ResNet, a
            substitute for ArcFace; load it once and pass it when calling this repeatedly).
        output_boxes, driving_boxes: optional face boxes per frame (skip the detector).

    Returns:
        ``{"shift", "csim_output_driving", "csim_source_driving"}``: ``(N,)`` float64 each, in
        ``[-2, 2]`` / ``[-1, 1]``; NaN for frames where the output or the driving frame has no face.

    Raises:
        NoFaceError: no face in the source image.
        InputError: bad images, or ``output`` and ``driving`` of different lengths.
    """
    enc = encoder or DlibIdentityEncoder()
    e_src = enc.embed(np.asarray(source), on_missing="raise", name="source")
    e_out = enc.embed(output, boxes=output_boxes, on_missing="nan", name="output")
    e_drv = enc.embed(driving, boxes=driving_boxes, on_missing="nan", name="driving")
    return identity_shift_from_embeddings(e_out, e_src, e_drv)
