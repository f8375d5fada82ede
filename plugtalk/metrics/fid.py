"""FID, the Fréchet Inception Distance (Heusel et al., NeurIPS 2017; lower is better).

FID fits a Gaussian to deep features of each image set and returns the Fréchet (2-Wasserstein)
distance between the two (eq. 6 of the paper)::

    ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

The features are pluggable (:class:`FeatureExtractor`).  :class:`InceptionFeatures` gives the standard
2048-d pool3 features of torchvision's Inception-v3 architecture, with weights the user supplies
(nothing is downloaded; loaded with ``torch.load(weights_only=True)`` or safetensors).  Values depend
on the weights and resizing: torchvision's ImageNet weights do not give the same numbers as the
TF-Inception FID of most papers (pytorch-fid's ported weights need that package's modified blocks and
do not fit this architecture), so report the extractor's ``name`` with the value.
"""

from __future__ import annotations

import os
import warnings
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from .._optional import require
require("scipy", "eval", "the metrics (FID)")
from scipy import linalg
from torch import nn

from ..errors import CheckpointError, InputError
from ._images import image_batch

__all__ = ["FeatureExtractor", "TorchFeatures", "InceptionFeatures", "feature_statistics", "frechet_distance",
           "fid_from_features", "fid"]


@runtime_checkable
class FeatureExtractor(Protocol):
    """Maps ``(N, H, W, 3)`` uint8 RGB images to ``(N, D)`` float64 features; has a ``name``."""

    name: str

    def features(self, images) -> np.ndarray:
        ...


class TorchFeatures:
    """A :class:`FeatureExtractor` from any ``nn.Module`` taking ``(B, 3, S, S)`` RGB in ``[-1, 1]``.

    Args:
        network: maps ``(B, 3, S, S)`` to ``(B, D)`` (or ``(B, D, 1, 1)``); run in eval mode on its
            own device and dtype, without gradients.
        input_size: ``S``: images are resized to it (bilinear); ``None`` keeps their size.
        name: reported with results.
        batch_size: images per forward pass.
    """

    def __init__(self, network: nn.Module, input_size: int | None = None, name: str = "custom",
                 batch_size: int = 32):
        self.network, self.input_size, self.name, self.batch_size = network.eval(), input_size, name, batch_size

    def features(self, images) -> np.ndarray:
        batch, _ = image_batch(images, "images")
        p = next(self.network.parameters())
        out = []
        with torch.inference_mode():
            for s in range(0, len(batch), self.batch_size):
                x = torch.from_numpy(batch[s:s + self.batch_size]).to(p.device).permute(0, 3, 1, 2)
                x = x.to(p.dtype) / 127.5 - 1.0
                if self.input_size is not None and x.shape[-2:] != (self.input_size, self.input_size):
                    x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                  align_corners=False)
                out.append(self.network(x).flatten(1).double().cpu().numpy())
        return np.concatenate(out)


class InceptionFeatures(TorchFeatures):
    """Pool3 (2048-d, after the global average pool) features of torchvision's ``inception_v3``,
    on images resized to 299x299 and scaled to ``[-1, 1]``.

    Args:
        weights: a state dict of ``torchvision.models.inception_v3`` (``.pth`` via
            ``torch.load(weights_only=True)``, or ``.safetensors``); ``AuxLogits.*`` and ``fc.*`` are
            ignored, every other key must fit.
        device: where to run.

    Raises:
        CheckpointError: unreadable/unsafe file, or keys/shapes that do not fit Inception-v3.
    """

    def __init__(self, weights: str | os.PathLike, device: str | torch.device = "cpu", batch_size: int = 32):
        from torchvision.models import inception_v3

        from ..weights.plugtalk_format import read_state_dict

        state = {k.removeprefix("module."): v for k, v in read_state_dict(weights).items()}
        state = {k: v for k, v in state.items() if not k.startswith(("AuxLogits.", "fc."))}
        net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
        net.fc = nn.Identity()
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{str(weights)!r} does not fit torchvision's inception_v3: {e}") from e
        super().__init__(net.to(device), input_size=299, name=f"inception_v3:{os.path.basename(str(weights))}",
                         batch_size=batch_size)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``(N, D)`` features (N >= 2)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"FID needs at least 2 feature rows (N, D), got {f.shape}")
    if not np.isfinite(f).all():
        raise InputError("FID: features contain NaN or inf")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (matrix square root by
    ``scipy.linalg.sqrtm``; ``eps * I`` is added to both covariances if their product is singular)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise InputError(f"frechet_distance: shapes do not match: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if caught or not np.isfinite(covmean).all():  # singular product (fewer samples than dimensions)
        off = np.eye(s1.shape[0]) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def fid(pred, ref, extractor: FeatureExtractor) -> float:
    """FID between two sets of ``(N, H, W, 3)`` uint8 RGB images (``N >= 2`` each; thousands for a
    meaningful value), with the given feature extractor (e.g. :class:`InceptionFeatures`)."""
    return fid_from_features(extractor.features(pred), extractor.features(ref))
