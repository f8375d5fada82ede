"""Face detection, landmarks, identity embeddings and crops, from offline models."""

from .detect import FaceBox, as_rgb_uint8, detect_faces

__all__ = ["FaceBox", "as_rgb_uint8", "detect_faces"]
