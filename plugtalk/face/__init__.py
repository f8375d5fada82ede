"""Face detection, landmarks, identity embeddings and crops, from offline models."""

from .detect import FaceBox, as_rgb_frames, as_rgb_uint8, detect_faces
from .identity import ARCFACE_TEMPLATE_112, ArcFaceEncoder, DlibIdentityEncoder, IdentityEncoder
from .landmarks import DlibLandmarkDetector, LandmarkDetector, face_landmarks, find_largest_face

__all__ = ["FaceBox", "as_rgb_frames", "as_rgb_uint8", "detect_faces", "LandmarkDetector", "DlibLandmarkDetector",
           "face_landmarks", "find_largest_face", "IdentityEncoder", "DlibIdentityEncoder", "ArcFaceEncoder",
           "ARCFACE_TEMPLATE_112"]
