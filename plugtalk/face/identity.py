"""Identity embeddings of faces (for CSIM): a pluggable :class:`IdentityEncoder` with two implementations.

- :class:`DlibIdentityEncoder` (default, offline): dlib's ResNet face descriptor, 128-d, on faces
  aligned with dlib's 5-point predictor.  It is a *substitute*: FixTalk and most talking-head papers
  compute CSIM with ArcFace (Deng et al., CVPR 2019), so numbers from it are not comparable to theirs.
- :class:`ArcFaceEncoder`: ArcFace's IResNet (:mod:`plugtalk.face.iresnet`) with weights the user
  supplies (``arcface_torch`` ``backbone.pth`` or a safetensors file), on 112x112 faces aligned to
  the standard 5-point ArcFace template.

Both return L2-normalised ``float64`` rows; a frame without a face raises
:class:`~plugtalk.errors.NoFaceError` (``on_missing="raise"``) or gets a row of NaN (``on_missing="nan"``).
"""

from __future__ import annotations

import os
from typing import Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from ..errors import CheckpointError, InputError, NoFaceError
from . import models
from .detect import FaceBox, as_rgb_frames
from .iresnet import IRESNET_LAYERS, IResNet, iresnet_config_from_state_dict
from .landmarks import LEFT_EYE, RIGHT_EYE, DlibLandmarkDetector, LandmarkDetector, find_largest_face

__all__ = ["IdentityEncoder", "DlibIdentityEncoder", "ArcFaceEncoder", "ARCFACE_TEMPLATE_112", "arcface_align",
           "five_points"]

#: Where ArcFace's 112x112 crops put (left eye, right eye, nose tip, left mouth corner, right mouth
#: corner), in pixels, "left" meaning the image's left (insightface's standard alignment template).
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)

_ON_MISSING = ("raise", "nan")


@runtime_checkable
class IdentityEncoder(Protocol):
    """Maps face images to identity embeddings.

    Attributes:
        name: short name reported with results (e.g. ``"dlib-resnet128"``, ``"arcface-iresnet100"``).
        dim: embedding size ``D``.
        is_arcface_substitute: ``True`` when this is not ArcFace, the CSIM model of the papers.

    ``embed(frames, *, boxes=None, on_missing="raise", name="frames")``:
        frames: ``(N, H, W, 3)`` uint8 RGB, a list of ``(H, W, 3)`` uint8, or one ``(H, W, 3)`` image.
        boxes: optional face box per frame (``None`` entries, or ``boxes=None``: detect the largest face).
        on_missing: ``"raise"`` -> :class:`~plugtalk.errors.NoFaceError` naming the frame;
            ``"nan"`` -> that frame's row is all NaN.
        Returns ``(N, D)`` float64, each row of unit L2 norm (or NaN).
    """

    name: str
    dim: int
    is_arcface_substitute: bool

    def embed(self, frames, *, boxes: Sequence[FaceBox | None] | None = None, on_missing: str = "raise",
              name: str = "frames") -> np.ndarray:
        ...


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class _FaceEmbedder:
    """Shared frame loop: validate, find each face, embed the found ones, handle the missing ones."""

    name = "?"
    dim = 0
    is_arcface_substitute = True

    def __init__(self, upsample: int | None = None, method: str = "hog"):
        self.upsample, self.method = upsample, method

    def _embed_faces(self, frames: list[np.ndarray], boxes: list[FaceBox], names: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, frames, *, boxes: Sequence[FaceBox | None] | None = None, on_missing: str = "raise",
              name: str = "frames") -> np.ndarray:
        if on_missing not in _ON_MISSING:
            raise ValueError(f"on_missing must be one of {_ON_MISSING}, got {on_missing!r}")
        imgs = as_rgb_frames(frames, name)
        if boxes is not None and len(boxes) != len(imgs):
            raise InputError(f"{name}: got {len(boxes)} face boxes for {len(imgs)} frames")
        out = np.full((len(imgs), self.dim), np.nan, dtype=np.float64)
        found, found_boxes, found_names = [], [], []
        for i, img in enumerate(imgs):
            fname = f"{name}[{i}]"
            box = boxes[i] if boxes is not None else None
            try:
                if box is None:
                    box = find_largest_face(img, upsample=self.upsample, method=self.method, name=fname)
                found.append(i), found_boxes.append(box), found_names.append(fname)
            except NoFaceError:
                if on_missing == "raise":
                    raise
        if found:
            emb = self._embed_faces([imgs[i] for i in found], found_boxes, found_names)
            out[found] = _l2_normalise(np.asarray(emb, dtype=np.float64))
        return out


class DlibIdentityEncoder(_FaceEmbedder):
    """dlib's ResNet-29 face descriptor (128-d; 99.38% on LFW), a stand-in for ArcFace.

    Faces are aligned by dlib's 5-point predictor and cropped to 150x150 with 25% padding
    (``dlib.get_face_chip`` alignment inside ``compute_face_descriptor``).  Models are loaded once
    per process.  dlib's descriptors are made for Euclidean distance (same person below ~0.6); the
    rows returned here are L2-normalised so their dot product is the cosine similarity used by CSIM.

    Args:
        upsample, method: face detection when no box is given (see :func:`find_largest_face`).
        num_jitters: dlib's test-time augmentation (0 = none; >1 averages that many jittered crops).
    """

    name = "dlib-resnet128"
    dim = 128
    is_arcface_substitute = True

    def __init__(self, upsample: int | None = None, method: str = "hog", num_jitters: int = 0):
        super().__init__(upsample, method)
        self.num_jitters = int(num_jitters)
        self._predictor = models.shape_predictor_5()
        self._net = models.face_descriptor()

    def _embed_faces(self, frames, boxes, names):
        rows = []
        for img, box in zip(frames, boxes):
            shape = self._predictor(img, box.to_dlib())
            rows.append(np.asarray(self._net.compute_face_descriptor(img, shape, self.num_jitters)))
        return np.stack(rows)

    def __repr__(self) -> str:
        return f"DlibIdentityEncoder(upsample={self.upsample}, method={self.method!r}, num_jitters={self.num_jitters})"


def five_points(landmarks68: np.ndarray) -> np.ndarray:
    """ArcFace's 5 alignment points from 68 iBUG-300W landmarks: the two eye centres (mean of each
    eye's 6 points), the nose tip (30) and the mouth corners (48, 54); ``(5, 2)`` ``(x, y)`` pixels."""
    lm = np.asarray(landmarks68, dtype=np.float64)
    if lm.shape != (68, 2):
        raise InputError(f"expected (68, 2) landmarks, got {lm.shape}")
    return np.stack([lm[list(LEFT_EYE)].mean(0), lm[list(RIGHT_EYE)].mean(0), lm[30], lm[48], lm[54]])


def arcface_align(image: np.ndarray, points5: np.ndarray, size: int = 112) -> np.ndarray:
    """Warp a face to ArcFace's canonical crop.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        points5: ``(5, 2)`` ``(x, y)`` pixels in the order of :data:`ARCFACE_TEMPLATE_112`.
        size: output side (the template is scaled by ``size / 112``).

    Returns:
        ``(size, size, 3)`` uint8: the similarity transform (least squares, Umeyama) that maps the
        points onto the template, applied with bilinear interpolation (outside the image: black).
    """
    from .._optional import require
    require("skimage", "face", "face alignment for identity embeddings")
    from skimage.transform import SimilarityTransform, warp

    tform = SimilarityTransform.from_estimate(np.asarray(points5, np.float64), ARCFACE_TEMPLATE_112 * (size / 112.0))
    if not tform:
        raise InputError("arcface_align: the 5 face points are degenerate (no similarity transform fits them)")
    out = warp(image, tform.inverse, output_shape=(size, size), order=1, mode="constant", cval=0.0,
               preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class ArcFaceEncoder(_FaceEmbedder):
    """ArcFace identity embeddings (Deng et al., CVPR 2019) from user-supplied IResNet weights.

    Nothing is downloaded: pass the ``backbone.pth`` of an ``arcface_torch`` model (iresnet18-200;
    read with ``torch.load(weights_only=True)``) or a ``.safetensors`` file with the same keys, or a
    ready :class:`~plugtalk.face.iresnet.IResNet` as ``network``.  Depth, widths and embedding size are
    read off the state dict.  Faces are aligned with 5 points taken from the 68 landmarks of
    ``landmark_detector`` onto :data:`ARCFACE_TEMPLATE_112`, scaled to ``[-1, 1]`` and embedded in
    eval mode on the network's device (CPU or CUDA; no gradients).

    Args:
        weights: path of the weights file (exclusive with ``network``).
        network: an :class:`IResNet` to use as is.
        device: where to put the network loaded from ``weights`` (ignored with ``network``).
        landmark_detector: 68-point landmarks for alignment (default :class:`DlibLandmarkDetector`).
        batch_size: faces per forward pass.

    Raises:
        CheckpointError: the file is missing/unsafe/corrupt or is not an IResNet state dict.
    """

    is_arcface_substitute = False

    def __init__(self, weights: str | os.PathLike | None = None, *, network: IResNet | None = None,
                 device: str | torch.device = "cpu", landmark_detector: LandmarkDetector | None = None,
                 batch_size: int = 32, upsample: int | None = None, method: str = "hog"):
        super().__init__(upsample, method)
        if (weights is None) == (network is None):
            raise ValueError("ArcFaceEncoder: pass exactly one of weights (a file) or network (an IResNet)")
        if network is None:
            from ..weights.plugtalk_format import read_state_dict

            state = read_state_dict(weights)
            state = {k.removeprefix("module."): v for k, v in state.items()}
            network = IResNet(**iresnet_config_from_state_dict(state))
            try:
                network.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"{str(weights)!r} does not fit an IResNet: {e}") from e
            network = network.to(device)
        self.network = network.eval()
        cfg = getattr(network, "config", {})
        self.input_size = int(cfg.get("input_size", 112))
        self.dim = int(network.fc.out_features)
        arch = next((k for k, v in IRESNET_LAYERS.items() if v == cfg.get("layers")), "iresnet")
        self.name = f"arcface-{arch}"
        self.landmark_detector = landmark_detector or DlibLandmarkDetector(upsample, method)
        self.batch_size = int(batch_size)

    def _embed_faces(self, frames, boxes, names):
        crops = np.stack([arcface_align(img, five_points(self.landmark_detector.landmarks(img, box, name=n)),
                                        self.input_size) for img, box, n in zip(frames, boxes, names)])
        p = next(self.network.parameters())
        rows = []
        with torch.inference_mode():
            for s in range(0, len(crops), self.batch_size):
                x = torch.from_numpy(crops[s:s + self.batch_size]).to(p.device).permute(0, 3, 1, 2)
                x = x.to(p.dtype).div(127.5).sub(1.0)
                rows.append(self.network(x).float().cpu().numpy())
        return np.concatenate(rows)

    def __repr__(self) -> str:
        return f"ArcFaceEncoder(name={self.name!r}, dim={self.dim}, input_size={self.input_size})"
