"""GoHD's driving controls: per-frame 3DMM expression / head pose / gaze -> coefficient windows.

GoHD's animator (:class:`~plugtalk.backbones.gohd.GoHD`) takes, for each output frame, a window
``(72, T)`` of per-frame vectors around it.  The 72 channels of one frame (fixed by the trained weights):

====== ======================================================================================
0-63   expression: Deep3DFaceRecon coefficients 80-143, times ``expression_scale`` (demo: 1.5)
64-69  pose: angles (Deep3DFaceRecon 224-226, radians) then translation (254-256), all times
       ``pose_scale`` (demo: 1.2)
70-71  gaze, radians, from L2CS-Net: channel 70 the horizontal (yaw) head, 71 the vertical (pitch)
       head.  0 looks straight ahead; the demo's "left" / "right" presets put 0.2 / -0.7 in channel 70.
====== ======================================================================================

The scales are the official demo's (``inference.py --exp_scale 1.5 --pose_scale 1.2``); they are
applied here, not inside the backbone.  A window for frame ``i`` holds frames ``i-13 .. i+13`` with
indices clamped to the sequence (edges repeated), as the demo builds it; the network needs at least
25 frames (:attr:`GoHDConfig.min_window`).

Coefficient files (Deep3DFaceRecon, github.com/sicxu/Deep3DFaceRecon_pytorch), read by
:func:`read_face_coefficients`:

- the full per-frame vector, ``(T, 257)`` (id 80 | exp 64 | tex 80 | angle 3 | gamma 27 | trans 3), or
  ``(T, 262)`` as GoHD's own detector returns it (``coeff_3dmm``: the 257 then 5 alignment parameters);
- the compact vector ``(T, 70)`` / ``(T, 73)`` (exp 64 | angle 3 | trans 3 [| crop 3]) that the demo's
  ``--driving_coeffs_file`` ``.mat`` holds under ``coeff_3dmm`` (PIRenderer's format);
- Deep3DFaceRecon's own ``save_coeff`` ``.mat``: separate ``exp`` / ``angle`` / ``trans`` arrays.

``.npy`` holds the array itself; ``.mat`` / ``.npz`` hold it under ``coeff`` or ``coeff_3dmm``.
Gaze files (:func:`read_gaze`): ``(T, 2)`` or ``(2,)`` yaw, pitch in radians, ``.npy`` or text.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..io.arrays import load_npy
from .gohd import COEFFICIENT_DIM, EXPRESSION, GAZE, POSE

__all__ = ["EXPRESSION_SCALE", "POSE_SCALE", "WINDOW_RADIUS", "FaceCoefficients", "read_face_coefficients",
           "read_gaze", "parse_gaze", "l2cs_gaze", "smooth_pose", "frame_vectors", "coefficient_windows"]

EXPRESSION_SCALE = 1.5   #: official demo ``--exp_scale``
POSE_SCALE = 1.2         #: official demo ``--pose_scale``
WINDOW_RADIUS = 13       #: official demo: frame i uses frames i-13 .. i+13 (27 frames)

_FULL = {"expression": (80, 144), "angles": (224, 227), "translation": (254, 257)}
_COMPACT = {"expression": (0, 64), "angles": (64, 67), "translation": (67, 70)}
_WIDTHS = {257: _FULL, 262: _FULL, 70: _COMPACT, 73: _COMPACT}
_EXPECTED = ("a (T, 257) / (T, 262) Deep3DFaceRecon coefficient array, a (T, 70) / (T, 73) compact "
             "exp|angle|trans array, or a .mat with 'exp' (T, 64), 'angle' (T, 3), 'trans' (T, 3)")


class FaceCoefficients(NamedTuple):
    """Unscaled per-frame 3DMM coefficients as Deep3DFaceRecon estimates them."""

    expression: Tensor   #: ``(T, 64)``
    pose: Tensor         #: ``(T, 6)``: angles (rad) then translation


def _as_2d(a: np.ndarray, name: str, path: Path) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
        raise InputError(f"{str(path)!r}: {name} has shape {a.shape} ({a.dtype}); expected {_EXPECTED}")
    return a


def _split(a: np.ndarray, name: str, path: Path) -> FaceCoefficients:
    a = _as_2d(a, name, path)
    layout = _WIDTHS.get(a.shape[1])
    if layout is None:
        raise InputError(f"{str(path)!r}: {name} has shape {a.shape}; expected {_EXPECTED}")
    part = {k: torch.from_numpy(np.ascontiguousarray(a[:, s:e], dtype=np.float32)) for k, (s, e) in layout.items()}
    return _checked(FaceCoefficients(part["expression"], torch.cat((part["angles"], part["translation"]), 1)), path)


def _checked(c: FaceCoefficients, path: Path) -> FaceCoefficients:
    if c.expression.shape[0] == 0:
        raise InputError(f"{str(path)!r}: no frames")
    if not (torch.isfinite(c.expression).all() and torch.isfinite(c.pose).all()):
        raise InputError(f"{str(path)!r}: coefficients contain NaN or inf")
    return c


def _load_table(path: Path) -> dict[str, np.ndarray]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return {"array": load_npy(path, "coefficient file")}
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if suffix == ".mat":
            from .._optional import require
            require("scipy", "face", "reading .mat coefficient files")
            from scipy.io import loadmat
            return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    except (OSError, ValueError, TypeError, NotImplementedError) as e:
        raise InputError(f"cannot read coefficient file {str(path)!r}: {e}") from e
    raise InputError(f"{str(path)!r}: coefficient files are .npy, .npz or .mat (expected {_EXPECTED})")


def read_face_coefficients(path: str | os.PathLike) -> FaceCoefficients:
    """Read a Deep3DFaceRecon coefficient file (layouts in the module docstring), unscaled.

    Raises:
        InputError: missing/unreadable file, or a layout other than the documented ones (the message
            names the expected shapes), or NaN / inf values.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"coefficient file {str(p)!r} does not exist")
    table = _load_table(p)
    if "array" in table:
        return _split(table["array"], "the array", p)
    for key in ("coeff", "coeff_3dmm"):
        if key in table:
            return _split(table[key], repr(key), p)
    if all(k in table for k in ("exp", "angle", "trans")):
        exp, ang, tr = (_as_2d(table[k], repr(k), p) for k in ("exp", "angle", "trans"))
        if exp.shape[1] != 64 or ang.shape[1] != 3 or tr.shape[1] != 3 or not (len(exp) == len(ang) == len(tr)):
            raise InputError(f"{str(p)!r}: 'exp' {exp.shape}, 'angle' {ang.shape}, 'trans' {tr.shape}; expected "
                             "(T, 64), (T, 3), (T, 3)")
        pose = np.concatenate((ang, tr), axis=1)
        return _checked(FaceCoefficients(torch.from_numpy(exp.astype(np.float32)),
                                         torch.from_numpy(pose.astype(np.float32))), p)
    raise InputError(f"{str(p)!r} holds {sorted(table)[:10]}; expected {_EXPECTED} (under 'coeff' or 'coeff_3dmm')")


def read_gaze(path: str | os.PathLike) -> Tensor:
    """Per-frame gaze ``(T, 2)`` (yaw, pitch; radians) from ``.npy`` or a text file (one row per frame).

    Raises:
        InputError: missing/unreadable file, a shape other than ``(T, 2)`` / ``(2,)``, NaN / inf.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"gaze file {str(p)!r} does not exist")
    try:
        a = load_npy(p, "gaze file") if p.suffix.lower() == ".npy" else np.loadtxt(p, delimiter=None, ndmin=2)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read gaze file {str(p)!r}: {e}") from e
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
        raise InputError(f"{str(p)!r}: gaze has shape {a.shape}; expected (T, 2) yaw, pitch in radians")
    if not np.isfinite(a).all():
        raise InputError(f"{str(p)!r}: gaze contains NaN or inf")
    return torch.from_numpy(a.astype(np.float32))


def parse_gaze(text: str) -> Tensor:
    """``"YAW,PITCH"`` (radians) -> ``(2,)``.  Raises :class:`InputError` on anything else."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise InputError(f"gaze must be 'YAW,PITCH' in radians (e.g. 0.2,0), got {text!r}")
    return torch.tensor(values, dtype=torch.float32)


def l2cs_gaze(yaw_logits: Tensor, pitch_logits: Tensor) -> Tensor:
    """L2CS-Net's 90-bin heads ``(T, 90)`` each -> gaze ``(T, 2)`` (yaw, pitch; radians).

    The angle is the softmax expectation of the bin index, times 4 degrees, minus 180 degrees
    (Abdelrahman et al., "L2CS-Net", 2022; the GoHD demo's ``get_gaze_params``).  Pass L2CS's heads by
    name: its forward returns (yaw, pitch), which the GoHD demo unpacks under swapped names, so that
    channel 70 ends up holding the yaw head.
    """
    bins = torch.arange(yaw_logits.shape[-1], dtype=yaw_logits.dtype, device=yaw_logits.device)
    deg = [(torch.softmax(h, dim=-1) * bins).sum(-1) * 4 - 180 for h in (yaw_logits, pitch_logits)]
    return torch.stack(deg, dim=-1) * (math.pi / 180.0)


def smooth_pose(pose: Tensor) -> Tensor:
    """The demo's ``--pose_smoothing`` (on for audio-generated poses, not for coefficient files):
    frames ``2 .. T-3`` in order become the mean of frames ``i-2 .. i+2`` *as already smoothed*
    (a recursive 5-tap mean).  ``(T, 6) -> (T, 6)``, a new tensor."""
    out = pose.clone()
    for i in range(2, len(out) - 2):
        out[i] = out[i - 2:i + 3].mean(dim=0)
    return out


def frame_vectors(expression: Tensor, pose: Tensor, gaze: Tensor | None = None,
                  expression_scale: float = EXPRESSION_SCALE, pose_scale: float = POSE_SCALE) -> Tensor:
    """Per-frame controls -> ``(T, 72)`` frame vectors, scaled as the official demo scales them.

    Args:
        expression: ``(T, 64)`` Deep3DFaceRecon expression coefficients (unscaled).
        pose: ``(T, 6)`` angles (rad) then translation (unscaled).
        gaze: ``(T, 2)`` or ``(2,)`` (yaw, pitch; radians; not scaled), or ``None`` for straight ahead
            (the demo's default ``--freeze_gaze 0``).  Set independently of expression and pose.

    Raises:
        InputError: shapes that do not fit (naming the expected ones) or NaN / inf.
    """
    t = expression.shape[0] if expression.ndim == 2 else -1
    if expression.ndim != 2 or expression.shape[1] != EXPRESSION.stop - EXPRESSION.start:
        raise InputError(f"expression: expected (T, 64), got {tuple(expression.shape)}")
    if tuple(pose.shape) != (t, POSE.stop - POSE.start):
        raise InputError(f"pose: expected ({t}, 6) (three angles, three translations), got {tuple(pose.shape)}")
    if gaze is None:
        gaze = expression.new_zeros(t, 2)
    elif tuple(gaze.shape) == (2,):
        gaze = gaze.to(expression).expand(t, 2)
    elif tuple(gaze.shape) != (t, GAZE.stop - GAZE.start):
        raise InputError(f"gaze: expected ({t}, 2) or (2,) yaw, pitch in radians, got {tuple(gaze.shape)}")
    out = torch.cat((expression * expression_scale, pose.to(expression) * pose_scale, gaze.to(expression)), dim=1)
    if not torch.isfinite(out).all():
        raise InputError("frame vectors contain NaN or inf")
    return out


def coefficient_windows(frames: Tensor, radius: int = WINDOW_RADIUS, indices=None) -> Tensor:
    """Per-frame vectors ``(T, 72)`` -> one window per frame ``(N, 72, 2*radius+1)``, edges clamped.

    Window ``n`` holds frames ``i-radius .. i+radius`` (``i = indices[n]``, default every frame),
    each index clamped to ``[0, T-1]`` as the official demo does.

    Raises:
        InputError: ``frames`` not ``(T, 72)``, an empty sequence, or ``2*radius+1 < 25``.
    """
    if frames.ndim != 2 or frames.shape[1] != COEFFICIENT_DIM or frames.shape[0] == 0:
        raise InputError(f"frames: expected (T, {COEFFICIENT_DIM}) with T >= 1, got {tuple(frames.shape)}")
    if 2 * radius + 1 < 25:
        raise InputError(f"radius {radius} gives {2 * radius + 1}-frame windows; GoHD needs at least 25 (radius 12)")
    t = frames.shape[0]
    centres = torch.arange(t) if indices is None else torch.as_tensor(indices, dtype=torch.long)
    idx = (centres[:, None] + torch.arange(-radius, radius + 1)[None]).clamp(0, t - 1)   # (N, 2r+1)
    return frames[idx].transpose(1, 2).contiguous()
