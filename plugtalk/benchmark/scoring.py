"""Per-pair scores of the leakage protocol on 256 px frames: face data (identity embedding, landmarks, head
pose) computed once per image, CSIM to the source, the identity shift toward the driver per frame
(:mod:`plugtalk.metrics.identity_shift`), NIQE, CPBD, faces found; PSNR / SSIM / F-LMD / CSIM for
self-reenactment; the pose and expression difference of a pair (:mod:`plugtalk.face.pose`).

CSIM uses dlib's ResNet (a substitute for the papers' ArcFace) unless an ArcFace encoder is given.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Face", "Scorer", "score_cross", "score_copy_source_cross", "score_self", "pair_geometry", "nanmean"]


@dataclasses.dataclass
class Face:
    """What the protocol needs of one image: identity embedding (NaN without a face), 68 landmarks and head
    pose (``None`` when dlib finds no face)."""

    embedding: np.ndarray
    landmarks: np.ndarray | None
    pose: object | None


def nanmean(v) -> float:
    """Mean of the finite values (NaN when none)."""
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


class Scorer:
    """Face models loaded once; per-image face data cached by key.

    Args:
        encoder: an identity encoder (:class:`plugtalk.face.identity.ArcFaceEncoder`); ``None``: dlib's ResNet.
    """

    def __init__(self, encoder=None):
        from ..face.identity import DlibIdentityEncoder
        from ..face.landmarks import DlibLandmarkDetector

        self.encoder = encoder or DlibIdentityEncoder()
        self.landmarker = DlibLandmarkDetector()
        self.cache: dict[str, object] = {}

    def boxes(self, images: np.ndarray) -> list:
        from ..errors import NoFaceError
        from ..face.landmarks import find_largest_face

        out = []
        for im in images:
            try:
                out.append(find_largest_face(im))
            except NoFaceError:
                out.append(None)
        return out

    def embed(self, images: np.ndarray, boxes: list) -> np.ndarray:
        e = np.full((len(images), self.encoder.dim), np.nan)
        found = [i for i, b in enumerate(boxes) if b is not None]
        if found:
            e[found] = self.encoder.embed(images[found], boxes=[boxes[i] for i in found])
        return e

    def landmarks(self, images: np.ndarray, boxes: list) -> np.ndarray:
        lm = np.full((len(images), 68, 2), np.nan)
        for i, (im, b) in enumerate(zip(images, boxes)):
            if b is not None:
                lm[i] = self.landmarker.landmarks(im, b)
        return lm

    def faces(self, key: str, images: np.ndarray) -> list[Face]:
        """Face data of ``images`` (``(N, 256, 256, 3)`` uint8; cached under ``key/i``)."""
        from ..face.pose import head_pose

        missing = [i for i in range(len(images)) if f"{key}/{i}" not in self.cache]
        if missing:
            sub = images[missing]
            boxes = self.boxes(sub)
            emb, lms = self.embed(sub, boxes), self.landmarks(sub, boxes)
            for j, i in enumerate(missing):
                ok = boxes[j] is not None
                self.cache[f"{key}/{i}"] = Face(emb[j], lms[j] if ok else None, head_pose(lms[j]) if ok else None)
        return [self.cache[f"{key}/{i}"] for i in range(len(images))]


def _cross_scores(e: np.ndarray, found: np.ndarray, niqe_v, cpbd_v, src: Face, drivers: list[Face]) -> dict:
    from ..metrics import cosine_similarity
    from ..metrics.identity_shift import identity_shift_from_embeddings

    d = np.stack([f.embedding for f in drivers])
    shift = identity_shift_from_embeddings(e, src.embedding, d)["shift"]
    return {"csim": nanmean(cosine_similarity(e, src.embedding)), "identity_shift": nanmean(shift),
            "niqe": nanmean(niqe_v), "cpbd": nanmean(cpbd_v), "faces_found": float(np.mean(found)),
            "frames": len(e), "per_frame": {"identity_shift": [float(x) for x in np.atleast_1d(shift)]}}


def score_cross(scorer: Scorer, outputs: np.ndarray, src: Face, drivers: list[Face]) -> dict:
    """Pair means of CSIM to the source, identity shift toward the driver (and per frame), NIQE, CPBD and the
    share of frames with a face, for 256 px ``outputs`` (frame ``t`` driven by ``drivers[t]``)."""
    from ..metrics import cpbd, niqe

    boxes = scorer.boxes(outputs)
    return _cross_scores(scorer.embed(outputs, boxes), np.array([b is not None for b in boxes]),
                         np.atleast_1d(niqe(outputs)), np.atleast_1d(cpbd(outputs)), src, drivers)


def score_copy_source_cross(scorer: Scorer, key: str, image: np.ndarray, src: Face, drivers: list[Face]) -> dict:
    """:func:`score_cross` of the source repeated once per driving frame, computed from the one image."""
    from ..metrics import cpbd, niqe

    if f"quality:{key}" not in scorer.cache:
        scorer.cache[f"quality:{key}"] = (float(np.atleast_1d(niqe(image[None]))[0]),
                                          float(np.atleast_1d(cpbd(image[None]))[0]))
    q, n = scorer.cache[f"quality:{key}"], len(drivers)
    return _cross_scores(np.repeat(src.embedding[None], n, 0), np.full(n, src.pose is not None), [q[0]] * n,
                         [q[1]] * n, src, drivers)


def score_self(scorer: Scorer, outputs: np.ndarray, truth: np.ndarray, truth_faces: list[Face],
               output_face: Face | None = None, quality: bool = False) -> dict:
    """Pair means of PSNR (dB), SSIM, F-LMD (px at 256 px) and CSIM to the true frames (with ``quality`` also
    NIQE and CPBD of the outputs).  ``output_face``: the face data of every output when they are all one image
    (copy-source), instead of detecting each."""
    from ..metrics import cosine_similarity, cpbd, landmark_distance, niqe, psnr, ssim

    if output_face is None:
        boxes = scorer.boxes(outputs)
        found = [b is not None for b in boxes]
        e = scorer.embed(outputs, boxes)
        lm = scorer.landmarks(outputs, boxes)
    else:
        found = [output_face.landmarks is not None] * len(outputs)
        e = np.repeat(output_face.embedding[None], len(outputs), 0)
        lm = np.repeat((output_face.landmarks if output_face.landmarks is not None
                        else np.full((68, 2), np.nan))[None], len(outputs), 0)
    true_lm = np.stack([f.landmarks if f.landmarks is not None else np.full((68, 2), np.nan) for f in truth_faces])
    true_e = np.stack([f.embedding for f in truth_faces])
    out = {"psnr": nanmean(np.atleast_1d(psnr(outputs, truth))),
           "ssim": nanmean(np.atleast_1d(ssim(outputs, truth))),
           "f_lmd": nanmean(landmark_distance(lm, true_lm)), "csim": nanmean(cosine_similarity(e, true_e)),
           "faces_found": float(np.mean(found)), "frames": len(outputs)}
    if quality:
        out["niqe"], out["cpbd"] = nanmean(np.atleast_1d(niqe(outputs))), nanmean(np.atleast_1d(cpbd(outputs)))
    return out


def pair_geometry(src: Face, drivers: list[Face]) -> dict:
    """Mean head-pose difference (degrees) and expression distance between the source and the scored driving
    frames (NaN when the source or every driving frame lacks a face), and the frames that had both."""
    from ..face.pose import expression_distance, pose_difference

    if src.pose is None:
        return {"pose_diff": float("nan"), "expression_dist": float("nan"), "geometry_frames": 0}
    ok = [f for f in drivers if f.pose is not None]
    return {"pose_diff": nanmean([pose_difference(src.pose, f.pose) for f in ok]),
            "expression_dist": nanmean([expression_distance(src.landmarks, f.landmarks) for f in ok]),
            "geometry_frames": len(ok)}
