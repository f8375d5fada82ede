"""68-point facial landmarks (iBUG-300W scheme) with a pluggable detector; dlib's predictor by default.

Point groups of the iBUG-300W 68-point scheme (0-based): jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47 (36-41 on the image's left), mouth 48-67 (outer lip 48-59, inner lip 60-67).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import NoFaceError
from . import models
from .detect import FaceBox, as_rgb_uint8, detect_faces

__all__ = ["LandmarkDetector", "DlibLandmarkDetector", "face_landmarks", "find_largest_face",
           "NUM_LANDMARKS", "JAW", "BROWS", "NOSE", "LEFT_EYE", "RIGHT_EYE", "EYES", "MOUTH", "ALL_POINTS"]

NUM_LANDMARKS = 68
JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
LEFT_EYE = tuple(range(36, 42))   # on the image's left (the subject's right eye)
RIGHT_EYE = tuple(range(42, 48))  # on the image's right
EYES = LEFT_EYE + RIGHT_EYE
MOUTH = tuple(range(48, 68))
ALL_POINTS = tuple(range(NUM_LANDMARKS))


def find_largest_face(image: np.ndarray, *, upsample: int | None = None, method: str = "hog",
                      name: str = "image") -> FaceBox:
    """Largest face in an ``(H, W, 3)`` uint8 RGB image.

    Args:
        upsample: detector up-sampling. ``None`` tries 0 first (fast; faces of ~80 px and more, as in
            256 px talking-head crops) and 1 only when nothing was found (faces down to ~40 px).
        method: ``"hog"`` or ``"cnn"`` (see :func:`plugtalk.face.detect_faces`).
        name: what to call the input in error messages.

    Raises:
        InputError: not an ``(H, W, 3)`` uint8 array.
        NoFaceError: no face was found.
    """
    img = as_rgb_uint8(image, name)
    for up in ((0, 1) if upsample is None else (upsample,)):
        boxes = detect_faces(img, upsample=up, method=method)
        if boxes:
            return boxes[0]
    raise NoFaceError(f"{name}: no face found ({method} detector, {img.shape[1]}x{img.shape[0]} px)")


@runtime_checkable
class LandmarkDetector(Protocol):
    """Anything that returns 68 iBUG-300W landmarks for one face.

    ``landmarks(image, box=None, name="image")`` takes an ``(H, W, 3)`` uint8 RGB image and an
    optional face box (``None``: the largest detected face) and returns a ``(68, 2)`` float64 array of
    ``(x, y)`` pixel coordinates; it raises :class:`~plugtalk.errors.NoFaceError` (naming ``name``)
    when there is no face.
    """

    name: str

    def landmarks(self, image: np.ndarray, box: FaceBox | None = None, name: str = "image") -> np.ndarray:
        ...


class DlibLandmarkDetector:
    """dlib's ensemble-of-regression-trees predictor trained on iBUG-300W (Kazemi & Sullivan, CVPR 2014).

    The model is loaded once per process (:mod:`plugtalk.face.models`); instances are cheap.

    Args:
        upsample: face-detector up-sampling when no box is given (``None``: 0, then 1 if nothing found).
        method: face detector, ``"hog"`` or ``"cnn"``.
    """

    name = "dlib-68"

    def __init__(self, upsample: int | None = None, method: str = "hog"):
        self.upsample, self.method = upsample, method

    def landmarks(self, image: np.ndarray, box: FaceBox | None = None, name: str = "image") -> np.ndarray:
        img = as_rgb_uint8(image, name)
        if box is None:
            box = find_largest_face(img, upsample=self.upsample, method=self.method, name=name)
        shape = models.shape_predictor_68()(img, box.to_dlib())
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def __repr__(self) -> str:
        return f"DlibLandmarkDetector(upsample={self.upsample}, method={self.method!r})"


def face_landmarks(image: np.ndarray, box: FaceBox | None = None, *, detector: LandmarkDetector | None = None,
                   name: str = "image") -> np.ndarray:
    """68 facial landmarks of one face.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        box: the face; ``None`` detects the largest face.
        detector: a :class:`LandmarkDetector` (default :class:`DlibLandmarkDetector`).
        name: what to call the input in error messages.

    Returns:
        ``(68, 2)`` float64 ``(x, y)`` pixel coordinates (iBUG-300W order, see the module docstring).

    Raises:
        InputError: not an ``(H, W, 3)`` uint8 array.
        NoFaceError: no face found.
    """
    return (detector or DlibLandmarkDetector()).landmarks(image, box, name=name)
