"""Evaluation metrics for talking-head video, all offline.

Images are ``(H, W, 3)`` uint8 RGB arrays or ``(N, H, W, 3)`` batches.

- :func:`psnr`, :func:`ssim`: full-reference fidelity (scikit-image).
- :func:`csim`: identity similarity (cosine of face embeddings; dlib by default, ArcFace pluggable).
- :func:`lmd` (F-LMD / M-LMD), :func:`akd`: landmark distances.
- :func:`niqe`: no-reference naturalness (lower is better); :func:`cpbd`: no-reference sharpness.
- :func:`fid`: Fréchet distance of deep features (user-supplied Inception weights).
- :class:`MetricSuite`: all of them for a clip, with the face models loaded once.
"""

from .cpbd import cpbd
from .fid import FeatureExtractor, InceptionFeatures, TorchFeatures, fid, fid_from_features, frechet_distance
from .fidelity import psnr, ssim
from .identity import cosine_similarity, csim, encoder_description
from .landmarks import akd, landmark_distance, lmd
from .niqe import niqe
from .suite import ALL_METRICS, DEFAULT_METRICS, MetricSuite

__all__ = ["psnr", "ssim", "csim", "cosine_similarity", "encoder_description", "lmd", "akd", "landmark_distance",
           "niqe", "cpbd", "fid", "fid_from_features", "frechet_distance", "FeatureExtractor", "TorchFeatures",
           "InceptionFeatures", "MetricSuite", "ALL_METRICS", "DEFAULT_METRICS"]
