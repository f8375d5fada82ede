"""Offline face models: dlib's detectors, landmark predictors and ResNet face descriptor.

The model files ship in the ``face-recognition-models`` wheel (dlib's own releases, Boost licence /
public domain).  Its ``__init__`` imports the removed ``pkg_resources``, so the folder is located
with ``importlib.util.find_spec`` instead of importing it.  Each model is loaded once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

from ..errors import PlugtalkError

__all__ = ["model_dir", "model_file", "frontal_detector", "cnn_detector", "shape_predictor_68",
           "shape_predictor_5", "face_descriptor", "FaceModelsMissing"]

_LOCK = threading.Lock()


class FaceModelsMissing(PlugtalkError, FileNotFoundError):
    """dlib or the ``face-recognition-models`` files are not installed."""


@lru_cache(maxsize=None)
def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise FaceModelsMissing("face detection needs face-recognition-models, which is not installed: "
                                "pip install 'plugtalk[face]'")
    d = Path(spec.origin).parent / "models"
    if not d.is_dir():
        raise FaceModelsMissing(f"face-recognition-models has no models folder at {d}")
    return d


def model_file(name: str) -> Path:
    p = model_dir() / name
    if not p.is_file():
        raise FaceModelsMissing(f"dlib model file {name!r} is missing from {model_dir()}")
    return p


def _dlib():
    try:
        import dlib
    except ImportError:
        raise FaceModelsMissing("face detection needs dlib-bin, which is not installed: pip install 'plugtalk[face]'"
                                ) from None
    return dlib


@lru_cache(maxsize=None)
def frontal_detector():
    """dlib's HOG + linear SVM frontal face detector."""
    with _LOCK:
        return _dlib().get_frontal_face_detector()


@lru_cache(maxsize=None)
def cnn_detector():
    """dlib's MMOD CNN face detector (slower on CPU, finds more non-frontal faces)."""
    with _LOCK:
        return _dlib().cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))


@lru_cache(maxsize=None)
def shape_predictor_68():
    """iBUG-300W 68-point landmark predictor (Kazemi & Sullivan, CVPR 2014)."""
    with _LOCK:
        return _dlib().shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))


@lru_cache(maxsize=None)
def shape_predictor_5():
    """5-point predictor used to align faces for the face descriptor."""
    with _LOCK:
        return _dlib().shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))


@lru_cache(maxsize=None)
def face_descriptor():
    """dlib's ResNet-29 face-recognition network (128-d embedding; 99.38% on LFW)."""
    with _LOCK:
        return _dlib().face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))
