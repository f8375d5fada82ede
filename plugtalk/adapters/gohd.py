"""Adapter for GoHD's face animator: driven by coefficient windows, not by a driving image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import Tensor

from ..backbones.base import Encoding
from ..backbones.gohd import GoHD, check_coefficients
from ..backbones.gohd_coefficients import coefficient_windows, frame_vectors, parse_gaze, read_face_coefficients, \
    read_gaze
from ..errors import InputError
from .base import Adapter, Motion, Tap, identity_tap
from .controls import Control, ControlContext, ControlStream

__all__ = ["GoHDAdapter"]


# -- driving controls (plugtalk animate --coefficients FILE, --gaze YAW,PITCH | FILE) ----------------------------
def _gaze_options(value) -> dict[str, Any]:
    """A gaze value: a ``(T, 2)`` file if it names an existing file (or is a path), else ``"YAW,PITCH"`` text."""
    if value is None:
        return {}
    if isinstance(value, os.PathLike) or os.path.isfile(str(value)):
        return {"gaze_from": value}
    return {"gaze": str(value)}


def _read_coefficients(value, ctx: ControlContext) -> ControlStream:
    adapter = ctx.adapter
    sequence = adapter.read_coefficients(value, **_gaze_options(ctx.values.get("gaze")))
    if ctx.max_frames is not None:
        sequence = sequence[:ctx.max_frames]
    return ControlStream(lambda frames: adapter.coefficient_batch(sequence, frames), int(sequence.shape[0]), None,
                         Path(value).name)


COEFFICIENTS = Control("coefficients", "per-frame Deep3DFaceRecon coefficients (.npy / .npz / .mat): expression and "
                       "head pose, one output frame per row", _read_coefficients)
GAZE = Control("gaze", "gaze in radians: YAW,PITCH for every frame (default 0,0: straight ahead) or a (T, 2) "
               "yaw, pitch file; independent of expression and pose", lambda value, ctx: None,
               value="file-or-text", with_control="coefficients")


class GoHDAdapter(Adapter):
    """GoHD: ``latent = w_s + D(MLP([w_s, h]))`` with ``h`` the embedding of a coefficient window.

    The control ``coefficients (B, 72, T>=25)`` (:mod:`plugtalk.backbones.gohd_coefficients`) is turned into
    the driver's motion code ``h (B, style_dim)`` by the mapping network (:meth:`control_codes`), so EDI can
    restore the source's identity level from ``(z_s, h)`` like it does from ``(z_s, z_d)`` (the source's motion
    code ``z_s`` is its latent).  EMI is refused: it computes motion codes from driving images, and no
    driving image enters this animator.
    """

    drivers = ()
    driving_fills = ()
    accepts_emi = False
    controls = (COEFFICIENTS, GAZE)
    motion_taps = ("coefficients.embedding", "alpha", "direction")

    def __init__(self, backbone: GoHD, identity_level: int | None = None):
        if not isinstance(backbone, GoHD):
            raise TypeError(f"GoHDAdapter needs a GoHD backbone, got {type(backbone).__name__}")
        super().__init__(backbone, identity_level)

    def control_codes(self, controls: Mapping[str, Any], tap: Tap = identity_tap
                      ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        controls = dict(controls)
        window = controls.pop("coefficients", None)
        if window is None:
            return {}, controls
        return {"coefficients": tap("coefficients.embedding", self.backbone.embed(window))}, controls

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               **controls: Any) -> Motion:
        self.check_controls(controls)
        if "coefficients" not in codes:
            raise InputError(f"GoHDAdapter: a coefficient window is required: coefficients=(B, 72, "
                             f"T>={self.backbone.config.min_window})")
        return Motion(self.backbone.motion(source.latent, codes["coefficients"], tap))

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        return self.backbone.decode(motion.latent, pyramid)

    # -- control sequences (plugtalk animate --coefficients, --gaze, --gaze-from) -----------------------
    def read_coefficients(self, path: str | os.PathLike, gaze: str | None = None,
                      gaze_from: str | os.PathLike | None = None) -> Tensor:
        """Deep3DFaceRecon coefficients (+ gaze) -> per-frame vectors ``(T, 72)``, with the demo's scales.

        ``gaze``: ``"YAW,PITCH"`` for every frame; ``gaze_from``: a ``(T, 2)`` file; neither: straight ahead.
        A gaze file shorter or longer than the coefficients is an error.
        """
        if gaze is not None and gaze_from is not None:
            raise InputError("give a fixed gaze or a gaze file, not both")
        face = read_face_coefficients(path)
        g = parse_gaze(gaze) if gaze is not None else read_gaze(gaze_from) if gaze_from is not None else None
        if g is not None and g.ndim == 2 and g.shape[0] not in (1, face.expression.shape[0]):
            raise InputError(f"the gaze file has {g.shape[0]} frames, the coefficients {face.expression.shape[0]}")
        if g is not None and g.ndim == 2 and g.shape[0] == 1:
            g = g[0]
        return frame_vectors(face.expression, face.pose, g)

    def coefficient_batch(self, sequence: Tensor, frames: Tensor) -> dict[str, Any]:
        """Edge-clamped windows (the demo's +-13 frames) centred on ``frames``: ``{"coefficients": (n, 72, 27)}``."""
        p = next(self.backbone.parameters())
        windows = coefficient_windows(sequence, indices=frames.cpu()).to(device=p.device, dtype=p.dtype)
        return {"coefficients": check_coefficients(windows, self.backbone.config.min_window)}

    def example_inputs(self, batch: int, generator: Any = None) -> dict[str, Tensor]:
        import torch

        return {"coefficients": torch.randn(batch, 72, 27, generator=generator)}

