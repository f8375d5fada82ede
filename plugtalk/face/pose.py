"""Head pose (yaw, pitch, roll) and expression distance from 68 iBUG-300W landmarks.

Head pose is a scaled-orthographic PnP fit of :data:`MEAN_FACE_3D` to the 68 image points: rotation
``R``, scale ``s`` and image offset ``t`` minimising ``sum_i |s * P(R X_i) + t - x_i|^2`` (``P`` drops
the depth and turns the model's y-up into the image's y-down), solved by ``scipy.optimize.least_squares``
from a closed-form affine start (OpenCV's ``solvePnP`` is not a dependency; for 256 px face crops a
perspective camera changes the angles by a few degrees at most).

:data:`MEAN_FACE_3D` is an approximation made here, not a measured 3-D face model (none is shipped or
downloaded):

* **x, y** (units: the distance between the outer eye corners, points 36 and 45, ~9 cm on an adult):
  the mean of dlib's 68 landmarks on the first frame of each of the 61 training clips of the shared face
  set v2 (``faces/train``; near-frontal talking heads), after generalised Procrustes alignment
  (similarity, 10 rounds), made left-right symmetric (averaged with its mirror image, points paired as in
  :data:`MIRROR`) and levelled (eye line horizontal).  y points up.
* **z** (toward the camera, 0 at the outer eye corners): set by hand from typical facial proportions,
  rounded to 0.01 and symmetric: the jaw recedes from the chin (+0.12) to the ear end of the contour
  (-0.60, ~5 cm behind the eye corners); brows +0.00 (outer) to +0.22 (inner); nose bridge +0.22 to
  the tip +0.44; nostrils +0.24 to +0.32; eyes +0.00 (outer corner) to +0.14 (inner corner); mouth
  corners +0.14, lips up to +0.29.

Angles are therefore approximate (a few degrees); they are meant for ranking and binning pairs by how
far the driving head is from the source's (:func:`pose_difference`), and their signs are exact by
symmetry: a mirrored face gets the opposite yaw and roll and the same pitch.

Conventions (degrees; ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` in model coordinates x right, y up, z toward
the camera): **yaw > 0**: the nose points toward the image's right; **pitch > 0**: the face tilts down;
**roll > 0**: the head leans counter-clockwise in the image (the image-right eye higher).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import InputError

__all__ = ["MEAN_FACE_3D", "MIRROR", "HeadPose", "head_pose", "pose_difference", "expression_distance",
           "EXPRESSION_POINTS", "STABLE_POINTS"]

#: (68, 3) mean 3-D face (x right, y up, z toward the camera; outer-eye-corner distance 1); see the module doc.
MEAN_FACE_3D = np.array([
    (-0.822, +0.389, -0.60), (-0.807, +0.176, -0.55), (-0.779, -0.032, -0.47), (-0.737, -0.240, -0.37),
    (-0.661, -0.432, -0.25), (-0.540, -0.599, -0.12), (-0.383, -0.736, -0.02), (-0.203, -0.847, +0.06),
    (+0.000, -0.883, +0.12), (+0.203, -0.847, +0.06), (+0.383, -0.736, -0.02), (+0.540, -0.599, -0.12),
    (+0.661, -0.432, -0.25), (+0.737, -0.240, -0.37), (+0.779, -0.032, -0.47), (+0.807, +0.176, -0.55),
    (+0.822, +0.389, -0.60), (-0.666, +0.572, +0.00), (-0.570, +0.673, +0.10), (-0.429, +0.713, +0.16),
    (-0.279, +0.700, +0.20), (-0.139, +0.645, +0.22), (+0.139, +0.645, +0.22), (+0.279, +0.700, +0.20),
    (+0.429, +0.713, +0.16), (+0.570, +0.673, +0.10), (+0.666, +0.572, +0.00), (+0.000, +0.467, +0.22),
    (+0.000, +0.336, +0.28), (+0.000, +0.207, +0.35), (+0.000, +0.073, +0.44), (-0.159, -0.043, +0.24),
    (-0.082, -0.067, +0.29), (+0.000, -0.089, +0.32), (+0.082, -0.067, +0.29), (+0.159, -0.043, +0.24),
    (-0.500, +0.424, +0.00), (-0.413, +0.474, +0.10), (-0.309, +0.474, +0.13), (-0.218, +0.414, +0.14),
    (-0.314, +0.395, +0.12), (-0.416, +0.394, +0.09), (+0.218, +0.414, +0.14), (+0.309, +0.474, +0.13),
    (+0.413, +0.474, +0.10), (+0.500, +0.424, +0.00), (+0.416, +0.394, +0.09), (+0.314, +0.395, +0.12),
    (-0.303, -0.336, +0.14), (-0.192, -0.268, +0.22), (-0.080, -0.233, +0.27), (+0.000, -0.251, +0.29),
    (+0.080, -0.233, +0.27), (+0.192, -0.268, +0.22), (+0.303, -0.336, +0.14), (+0.196, -0.438, +0.22),
    (+0.088, -0.487, +0.26), (+0.000, -0.495, +0.27), (-0.088, -0.487, +0.26), (-0.196, -0.438, +0.22),
    (-0.252, -0.338, +0.15), (-0.082, -0.308, +0.25), (+0.000, -0.313, +0.27), (+0.082, -0.308, +0.25),
    (+0.252, -0.338, +0.15), (+0.083, -0.372, +0.24), (+0.000, -0.381, +0.26), (-0.083, -0.372, +0.24),
], dtype=np.float64)

#: Index of each point's mirror partner (left <-> right; midline points map to themselves).
MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
                  + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                  + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])

#: Points that move little with expression (eye corners, nose bridge and tip): the alignment of
#: :func:`expression_distance`.
STABLE_POINTS = (27, 28, 29, 30, 31, 35, 36, 39, 42, 45)
#: Points whose displacement is the expression: brows 17-26, eyes 36-47, mouth 48-67.
EXPRESSION_POINTS = tuple(range(17, 27)) + tuple(range(36, 48)) + tuple(range(48, 68))


@dataclasses.dataclass(frozen=True)
class HeadPose:
    """A fitted head pose: angles in degrees (see the module docstring for the signs), ``rotation`` the
    ``(3, 3)`` model-to-camera matrix, ``scale`` in image pixels per outer-eye-corner distance, and
    ``residual`` the RMS fitting error in the same units as a fraction of the scale."""

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    scale: float
    residual: float


def _landmarks(points, name: str) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise InputError(f"{name}: expected (68, 2) landmarks, got {p.shape}")
    if not np.isfinite(p).all():
        raise InputError(f"{name}: landmarks contain NaN / inf (no face found?)")
    return p


def _project(rotation: np.ndarray, scale: float, offset: np.ndarray) -> np.ndarray:
    cam = MEAN_FACE_3D @ rotation.T
    return scale * np.stack([cam[:, 0], -cam[:, 1]], axis=1) + offset


def head_pose(landmarks) -> HeadPose:
    """Yaw, pitch and roll of one face from its 68 landmarks (scaled-orthographic fit of :data:`MEAN_FACE_3D`).

    Args:
        landmarks: ``(68, 2)`` ``(x, y)`` image pixels, iBUG-300W order (e.g. from
            :func:`~plugtalk.face.landmarks.face_landmarks`).

    Returns:
        :class:`HeadPose`.

    Raises:
        InputError: not ``(68, 2)`` finite values.
    """
    from .._optional import require
    require("scipy", "face", "head-pose estimation")
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    x = _landmarks(landmarks, "landmarks")
    # closed-form start: affine camera [X 1] A = x, rows orthonormalised
    a, *_ = np.linalg.lstsq(np.hstack([MEAN_FACE_3D, np.ones((68, 1))]), x, rcond=None)
    m = a[:3].T * np.array([[1.0], [-1.0]])   # image y-down -> camera y-up
    s0 = float(np.linalg.norm(m, axis=1).mean())
    r1 = m[0] / np.linalg.norm(m[0])
    r2 = m[1] - (m[1] @ r1) * r1
    r2 /= np.linalg.norm(r2)
    r0 = np.stack([r1, r2, np.cross(r1, r2)])

    def residual(v):
        rot = Rotation.from_rotvec(v[:3]).as_matrix()
        return (_project(rot, v[3], v[4:6]) - x).ravel()

    v0 = np.concatenate([Rotation.from_matrix(r0).as_rotvec(), [s0], a[3]])
    fit = least_squares(residual, v0, method="lm")
    rot = Rotation.from_rotvec(fit.x[:3])
    # R = Rz(roll) Rx(pitch) Ry(yaw): intrinsic z-x-y sequence
    roll, pitch, yaw = rot.as_euler("ZXY", degrees=True)
    scale = float(abs(fit.x[3]))
    rms = float(np.sqrt(np.mean(fit.fun ** 2))) / max(scale, 1e-9)
    return HeadPose(float(yaw), float(pitch), float(roll), rot.as_matrix(), scale, rms)


def pose_difference(a: HeadPose, b: HeadPose) -> float:
    """Angle of the rotation between two head poses (geodesic distance on SO(3)), degrees in ``[0, 180]``."""
    rel = a.rotation @ b.rotation.T
    return float(np.degrees(np.arccos(np.clip((np.trace(rel) - 1.0) / 2.0, -1.0, 1.0))))


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity (scale, rotation, translation) taking ``src`` points onto ``dst`` (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(a.T @ b)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float((sig * np.diag(d)).sum() / max((a ** 2).sum(), 1e-12))
    return scale, rot, md - scale * ms @ rot


def expression_distance(source, driving) -> float:
    """How different two faces' expressions look: the mean distance of the brow, eye and mouth landmarks
    (:data:`EXPRESSION_POINTS`) after a similarity alignment of ``driving`` onto ``source`` on
    :data:`STABLE_POINTS`, divided by the source's outer-eye-corner distance (so ~0.05 for two neutral
    faces of different people, ~0.15 and more for an open mouth against a closed one).  Pose that a
    similarity cannot undo (yaw, pitch) also contributes; bin by :func:`pose_difference` as well.

    Args:
        source, driving: ``(68, 2)`` landmarks in pixels.

    Raises:
        InputError: not ``(68, 2)`` finite values.
    """
    s, d = _landmarks(source, "source landmarks"), _landmarks(driving, "driving landmarks")
    idx = list(STABLE_POINTS)
    scale, rot, offset = _similarity(d[idx], s[idx])
    aligned = scale * d @ rot + offset
    pts = list(EXPRESSION_POINTS)
    iod = float(np.linalg.norm(s[45] - s[36]))
    return float(np.linalg.norm(aligned[pts] - s[pts], axis=1).mean() / max(iod, 1e-9))
