"""Scoring the probe's outputs: identity (CSIM against source and driving), motion (LMD against the
driving frame) and quality (NIQE, CPBD), through plugtalk's metrics and face models.

The probe talks to a :class:`Scorer`: ``prepare`` looks at the pairs once (finds the faces, embeds
the source and driving identities, takes the driving landmarks) and ``score`` rates a batch of
outputs, one per pair.  :class:`FaceScorer` is the standard one; everything it uses (identity
encoder, landmark detector, face detector) is pluggable, e.g. ArcFace for paper-comparable CSIM.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import InputError, NoFaceError
from ..face.detect import FaceBox
from ..io.images import resize_square
from ..face.identity import DlibIdentityEncoder, IdentityEncoder
from ..face.landmarks import DlibLandmarkDetector, LandmarkDetector, find_largest_face
from ..metrics import cosine_similarity, cpbd, encoder_description, landmark_distance, niqe
from ..metrics.landmarks import LMD_SIZE

__all__ = [
    "DEFAULT_METRICS",
    "OUTPUT_FACES",
    "SCORER_METRICS",
    "FaceDetector",
    "FaceScorer",
    "References",
    "Scorer",
]

#: Metrics a :class:`FaceScorer` computes.
SCORER_METRICS = ("csim", "lmd", "niqe", "cpbd")
DEFAULT_METRICS = SCORER_METRICS
#: Where :class:`FaceScorer` looks for the face in an output: detect it, or use the driving frame's box.
OUTPUT_FACES = ("detect", "driving")

#: ``detector(image (H, W, 3) uint8, name) -> FaceBox``; raises :class:`~plugtalk.errors.NoFaceError`.
FaceDetector = Callable[[np.ndarray, str], FaceBox]


@dataclasses.dataclass
class References:
    """What a scorer keeps about the pairs: per-pair arrays/lists in ``data``, and per pair the reason
    it cannot be scored (``None``: usable), e.g. ``"no face in the source (a.png)"``."""

    problems: list[str | None]
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def select(self, indices: Sequence[int]) -> References:
        """The references of the pairs at ``indices``."""
        idx = list(indices)

        def take(v):
            if isinstance(v, np.ndarray):
                return v[idx]
            if isinstance(v, list):
                return [v[i] for i in idx]
            return v
        return References([self.problems[i] for i in idx], {k: take(v) for k, v in self.data.items()})


@runtime_checkable
class Scorer(Protocol):
    """Rates animator outputs against their pair's source and driving frames.

    Attributes:
        names: the per-output values :meth:`score` returns (e.g. ``csim_source``, ``csim_driving``,
            ``lmd``, ``niqe``, ``cpbd``, ``face_found``).

    ``prepare(sources, drivings, names)``: ``(N, H, W, 3)`` uint8 RGB each, ``names`` a
    ``(source, driving)`` label per pair for messages; returns :class:`References`.

    ``score(outputs, references)``: ``(N, H, W, 3)`` uint8 outputs (row ``i`` from pair ``i``) ->
    ``{name: (N,) float64}`` (NaN where a value cannot be computed, e.g. no face in the output).

    ``describe()``: a JSON-ready dict of what is measured and with which models.
    """

    names: tuple[str, ...]

    def prepare(self, sources: np.ndarray, drivings: np.ndarray,
                names: Sequence[tuple[str, str]] | None = None) -> References:
        ...

    def score(self, outputs: np.ndarray, references: References) -> dict[str, np.ndarray]:
        ...

    def describe(self) -> dict[str, Any]:
        ...


def _frames(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 4 or a.dtype != np.uint8 or a.shape[-1] != 3:
        raise InputError(f"{what}: expected (N, H, W, 3) uint8 RGB, got {a.dtype} {a.shape}")
    return a


class FaceScorer:
    """The probe's standard scorer.

    Per output (pair ``i``):

    * ``csim_source``, ``csim_driving``: CSIM (cosine of identity embeddings, [-1, 1]) with the
      pair's source / driving frame; the probe's identity shift is their difference;
    * ``lmd``: F-LMD, mean distance of the 68 landmarks to the driving frame's, pixels at 256 px
      (:func:`plugtalk.metrics.landmark_distance`);
    * ``niqe`` (lower is better) and ``cpbd`` ([0, 1], higher is sharper) of the whole frame;
    * ``face_found``: 1 if the output's face was found (``output_faces="detect"``), else 0.

    Args:
        metrics: a subset of :data:`SCORER_METRICS`.
        identity_encoder: CSIM embeddings (default dlib's ResNet, a substitute for the papers' ArcFace;
            :meth:`describe` says which was used).
        landmark_detector: 68-point landmarks (default dlib).
        face_detector: finds the face box in an image (default: dlib's HOG detector, largest face).
        output_faces: ``"detect"``: find the face in each output (outputs without one get NaN);
            ``"driving"``: use the driving frame's face box (a reenactment puts the face where the
            driver's is; scores every output, also distorted ones).
        upsample, method: settings of the default detectors (:func:`plugtalk.face.find_largest_face`).
        score_size: score every image (source, driving, output) resized to ``score_size x score_size`` px
            (Lanczos), e.g. 256 for a 64 px animator: NIQE needs at least 96 px and the face models work
            best on larger faces.  ``None``: the images' own size.

    Raises:
        InputError: unknown metric or ``output_faces``, or ``score_size < 16``.
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, *, identity_encoder: IdentityEncoder | None = None,
                 landmark_detector: LandmarkDetector | None = None, face_detector: FaceDetector | None = None,
                 output_faces: str = "detect", upsample: int | None = None, method: str = "hog",
                 score_size: int | None = None):
        metrics = tuple(dict.fromkeys(metrics))
        unknown = [m for m in metrics if m not in SCORER_METRICS]
        if unknown or not metrics:
            raise InputError(f"unknown probe metric(s) {unknown or '(none given)'}; choose from {SCORER_METRICS}")
        if output_faces not in OUTPUT_FACES:
            raise InputError(f"output_faces must be one of {OUTPUT_FACES}, got {output_faces!r}")
        if score_size is not None and score_size < 16:
            raise InputError(f"score_size must be at least 16 px, got {score_size}")
        self.metrics = metrics
        self.output_faces = output_faces
        self.score_size = score_size
        self.identity_encoder = identity_encoder or (DlibIdentityEncoder(upsample, method) if "csim" in metrics else None)
        self.landmark_detector = landmark_detector or (DlibLandmarkDetector(upsample, method) if "lmd" in metrics else None)
        self.face_detector = face_detector or (
            lambda image, name: find_largest_face(image, upsample=upsample, method=method, name=name))
        self.needs_faces = "csim" in metrics or "lmd" in metrics
        names: list[str] = []
        if "csim" in metrics:
            names += ["csim_source", "csim_driving"]
        names += [m for m in metrics if m in ("lmd", "niqe", "cpbd")]
        if self.needs_faces:
            names.append("face_found")
        self.names = tuple(names)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"scorer": type(self).__name__, "metrics": list(self.metrics),
                             "output_faces": self.output_faces, "score_size": self.score_size}
        if self.identity_encoder is not None:
            d["identity_encoder"] = encoder_description(self.identity_encoder)
        if self.landmark_detector is not None:
            d["landmark_detector"] = getattr(self.landmark_detector, "name", type(self.landmark_detector).__name__)
        return d

    def _sized(self, images: np.ndarray) -> np.ndarray:
        return images if self.score_size is None else resize_square(images, self.score_size)

    # -- faces ----------------------------------------------------------------------------------------
    def _boxes(self, images: np.ndarray, labels: Sequence[str]) -> list[FaceBox | None]:
        out: list[FaceBox | None] = []
        for img, label in zip(images, labels):
            try:
                out.append(self.face_detector(img, label))
            except NoFaceError:
                out.append(None)
        return out

    def _embed(self, images: np.ndarray, boxes: Sequence[FaceBox | None], label: str) -> np.ndarray:
        enc = self.identity_encoder
        found = [i for i, b in enumerate(boxes) if b is not None]
        out = np.full((len(images), enc.dim), np.nan)
        if found:
            out[found] = enc.embed(images[found], boxes=[boxes[i] for i in found], on_missing="nan", name=label)
        return out

    def _landmarks(self, images: np.ndarray, boxes: Sequence[FaceBox | None], label: str) -> np.ndarray:
        out = np.full((len(images), 68, 2), np.nan)
        for i, (img, b) in enumerate(zip(images, boxes)):
            if b is not None:
                out[i] = self.landmark_detector.landmarks(img, b, name=f"{label}[{i}]")
        return out

    # -- protocol ------------------------------------------------------------------------------------
    def prepare(self, sources: np.ndarray, drivings: np.ndarray,
                names: Sequence[tuple[str, str]] | None = None) -> References:
        s, d = self._sized(_frames(sources, "sources")), self._sized(_frames(drivings, "drivings"))
        if s.shape[0] != d.shape[0]:
            raise InputError(f"{s.shape[0]} source frames but {d.shape[0]} driving frames")
        n = s.shape[0]
        names = list(names) if names is not None else [(f"source[{i}]", f"driving[{i}]") for i in range(n)]
        problems: list[str | None] = [None] * n
        data: dict[str, Any] = {"size": np.array([[d.shape[2], d.shape[1]]] * n, dtype=np.float64)}
        if not self.needs_faces:
            return References(problems, data)
        sb = self._boxes(s, [a for a, _ in names])
        db = self._boxes(d, [b for _, b in names])
        for i in range(n):
            missing = [f"the source ({names[i][0]})"] * (sb[i] is None) + [f"the driving frame ({names[i][1]})"] * (db[i] is None)
            if missing:
                problems[i] = f"no face found in {' and '.join(missing)}"
        data["driving_boxes"] = db
        if "csim" in self.metrics:
            data["source_embedding"] = self._embed(s, sb, "sources")
            data["driving_embedding"] = self._embed(d, db, "drivings")
            for i in range(n):
                if problems[i] is None and np.isnan(data["source_embedding"][i]).any():
                    problems[i] = f"the identity encoder found no face in the source ({names[i][0]})"
                if problems[i] is None and np.isnan(data["driving_embedding"][i]).any():
                    problems[i] = f"the identity encoder found no face in the driving frame ({names[i][1]})"
        if "lmd" in self.metrics:
            data["driving_landmarks"] = self._landmarks(d, db, "drivings")
        return References(problems, data)

    def score(self, outputs: np.ndarray, references: References) -> dict[str, np.ndarray]:
        o = self._sized(_frames(outputs, "outputs"))
        n = o.shape[0]
        if len(references.problems) != n:
            raise InputError(f"{n} outputs but references for {len(references.problems)} pairs")
        res: dict[str, np.ndarray] = {}
        boxes: list[FaceBox | None] = []
        if self.needs_faces:
            if self.output_faces == "detect":
                boxes = self._boxes(o, [f"output[{i}]" for i in range(n)])
            else:
                boxes = list(references.data["driving_boxes"])
        if "csim" in self.metrics:
            e = self._embed(o, boxes, "outputs")
            res["csim_source"] = cosine_similarity(e, references.data["source_embedding"])
            res["csim_driving"] = cosine_similarity(e, references.data["driving_embedding"])
        if "lmd" in self.metrics:
            scale = LMD_SIZE / np.array([o.shape[2], o.shape[1]], dtype=np.float64)
            lp = self._landmarks(o, boxes, "outputs")
            res["lmd"] = landmark_distance(lp * scale, references.data["driving_landmarks"] * scale)
        if "niqe" in self.metrics:
            res["niqe"] = np.atleast_1d(np.asarray(niqe(o), dtype=np.float64))
        if "cpbd" in self.metrics:
            res["cpbd"] = np.atleast_1d(np.asarray(cpbd(o), dtype=np.float64))
        if self.needs_faces:
            res["face_found"] = np.array([b is not None for b in boxes], dtype=np.float64)
        return res
