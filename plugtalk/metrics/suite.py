"""One evaluator for a generated clip: loads the face models once, computes every metric in one pass."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import InputError, NoFaceError
from ..face.identity import DlibIdentityEncoder, IdentityEncoder
from ..face.landmarks import DlibLandmarkDetector, LandmarkDetector, find_largest_face
from ._images import image_batch
from .cpbd import cpbd
from .fid import FeatureExtractor, fid
from .fidelity import psnr, ssim
from .identity import cosine_similarity, encoder_description
from .identity_shift import identity_shift_from_embeddings
from .landmarks import akd, landmark_distance, lmd
from .niqe import PATCH as NIQE_PATCH
from .niqe import niqe

__all__ = ["MetricSuite", "ALL_METRICS", "DEFAULT_METRICS"]

ALL_METRICS = ("psnr", "ssim", "csim", "f_lmd", "m_lmd", "akd", "niqe", "cpbd", "fid", "identity_shift")
DEFAULT_METRICS = ("psnr", "ssim", "csim", "f_lmd", "m_lmd", "akd", "niqe", "cpbd")
_NEEDS_REF = {"psnr", "ssim", "f_lmd", "m_lmd", "akd", "fid"}
_LANDMARK_METRICS = {"f_lmd", "m_lmd", "akd"}


def _nanmean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


class MetricSuite:
    """Computes talking-head metrics for predicted frames against reference frames and/or a source.

    The identity encoder, landmark detector and FID feature extractor are created once, here, and
    reused for every call.  A frame without a detectable face is skipped for the face metrics (CSIM,
    F-LMD, M-LMD, AKD) and counted; it never aborts the evaluation.

    Args:
        metrics: names from :data:`ALL_METRICS` (default :data:`DEFAULT_METRICS`; ``"fid"`` needs
            ``fid_extractor``).
        identity_encoder: CSIM embeddings (default :class:`~plugtalk.face.identity.DlibIdentityEncoder`,
            a substitute for ArcFace - the result says which was used).
        landmark_detector: 68-point landmarks (default :class:`~plugtalk.face.landmarks.DlibLandmarkDetector`).
        fid_extractor: features for FID (e.g. :class:`~plugtalk.metrics.fid.InceptionFeatures`).
        upsample, method: face detection settings (see :func:`~plugtalk.face.landmarks.find_largest_face`).
        cpbd_edges: ``"matlab"`` or ``"python-cpbd"`` (see :func:`~plugtalk.metrics.cpbd.cpbd`).
    """

    def __init__(self, metrics: Iterable[str] | None = None, *, identity_encoder: IdentityEncoder | None = None,
                 landmark_detector: LandmarkDetector | None = None, fid_extractor: FeatureExtractor | None = None,
                 upsample: int | None = None, method: str = "hog", cpbd_edges: str = "python-cpbd"):
        names = tuple(metrics) if metrics is not None else DEFAULT_METRICS + (("fid",) if fid_extractor else ())
        unknown = [m for m in names if m not in ALL_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; expected names from {ALL_METRICS}")
        if "fid" in names and fid_extractor is None:
            raise ValueError("metric 'fid' needs fid_extractor (e.g. InceptionFeatures(weights_file))")
        self.metrics = names
        self.upsample, self.method, self.cpbd_edges = upsample, method, cpbd_edges
        self.identity_encoder = identity_encoder or (DlibIdentityEncoder(upsample, method) if "csim" in names else None)
        self.landmark_detector = landmark_detector or DlibLandmarkDetector(upsample, method)
        self.fid_extractor = fid_extractor

    def _boxes(self, frames: np.ndarray, name: str) -> list:
        out = []
        for i, f in enumerate(frames):
            try:
                out.append(find_largest_face(f, upsample=self.upsample, method=self.method, name=f"{name}[{i}]"))
            except NoFaceError:
                out.append(None)
        return out

    def _landmarks(self, frames: np.ndarray, boxes: list, name: str) -> np.ndarray:
        lm = np.full((len(frames), 68, 2), np.nan)
        for i, (f, b) in enumerate(zip(frames, boxes)):
            if b is not None:
                lm[i] = self.landmark_detector.landmarks(f, b, name=f"{name}[{i}]")
        return lm

    def _wanted(self, p: np.ndarray, r, source, driving, not_computed: dict[str, str]) -> list[str]:
        """The requested metrics these inputs allow; each other one gets its reason in ``not_computed``."""
        want = [m for m in self.metrics if not (m in _NEEDS_REF and r is None)]
        for m in self.metrics:
            if m not in want:
                not_computed[m] = "needs reference frames (ref)"
        if "niqe" in want and min(p.shape[1:3]) < NIQE_PATCH:
            want.remove("niqe")
            not_computed["niqe"] = f"needs frames of at least {NIQE_PATCH}x{NIQE_PATCH} px (NIQE's patch)"
        if "csim" in want and source is None and r is None:
            want.remove("csim")
            not_computed["csim"] = "needs a source image or reference frames"
        if "identity_shift" in want and (source is None or driving is None):
            want.remove("identity_shift")
            not_computed["identity_shift"] = "needs a source image and the driving frames (--driving)"
        return want

    def _pixel_metrics(self, want: list[str], p: np.ndarray, r) -> dict[str, np.ndarray]:
        """Per-frame PSNR, SSIM (against ``r``), NIQE and CPBD (no reference) among ``want``."""
        out: dict[str, np.ndarray] = {}
        if "psnr" in want:
            out["psnr"] = np.atleast_1d(psnr(p, r))
        if "ssim" in want:
            out["ssim"] = np.atleast_1d(ssim(p, r))
        if "niqe" in want:
            out["niqe"] = np.atleast_1d(niqe(p))
        if "cpbd" in want:
            out["cpbd"] = np.atleast_1d(cpbd(p, edges=self.cpbd_edges))
        return out

    def _identity_metrics(self, want, p, r, source, d, pbox, rbox, res: dict, frame_vals: dict,
                          skipped_any: np.ndarray) -> dict[str, np.ndarray]:
        """CSIM (to ``source``, else to ``r``) and the identity shift toward the driver ``d``, per frame, into
        ``frame_vals``; frames without a face are NaN and counted in ``res["skipped_frames"]`` and
        ``skipped_any``.  Returns the identity shift's two CSIM terms per frame (empty without it)."""
        enc = self.identity_encoder
        res["csim_encoder"] = encoder_description(enc)
        e_pred = enc.embed(p, boxes=pbox, on_missing="nan", name="pred")
        e_src = None
        if source is not None:
            try:
                e_src = enc.embed(np.asarray(source), on_missing="raise", name="source")
            except NoFaceError as err:
                e_src = np.full((1, e_pred.shape[1]), np.nan)
                res["warnings"].append(f"CSIM and identity shift not computed: {err}")
        extra: dict[str, np.ndarray] = {}
        if "identity_shift" in want:
            e_drv = enc.embed(d, boxes=self._boxes(d, "driving"), on_missing="nan", name="driving")
            shift = identity_shift_from_embeddings(e_pred, e_src, e_drv)
            frame_vals["identity_shift"] = shift["shift"]
            extra = {k: shift[k] for k in ("csim_output_driving", "csim_source_driving")}
            res["skipped_frames"]["identity_shift"] = int(np.isnan(shift["shift"]).sum())
            skipped_any |= np.isnan(shift["shift"])
        if "csim" in want:
            e_ref = e_src if source is not None else enc.embed(r, boxes=rbox, on_missing="nan", name="ref")
            c = cosine_similarity(e_pred, e_ref)
            frame_vals["csim"] = c
            res["skipped_frames"]["csim"] = int(np.isnan(c).sum())
            skipped_any |= np.isnan(c)
        return extra

    def _landmark_metrics(self, want, p, r, pbox, rbox, res: dict, frame_vals: dict, skipped_any: np.ndarray) -> None:
        """F-LMD and M-LMD (px at 256 px) and AKD (px) between the 68 landmarks of ``p`` and ``r``."""
        res["landmark_detector"] = getattr(self.landmark_detector, "name", type(self.landmark_detector).__name__)
        lp = self._landmarks(p, pbox, "pred")
        lr = self._landmarks(r, rbox, "ref")
        missing = np.isnan(lp).any(axis=(1, 2)) | np.isnan(lr).any(axis=(1, 2))
        res["skipped_frames"]["landmarks"] = int(missing.sum())
        skipped_any |= missing
        h, w = p.shape[1:3]
        scale = 256.0 / np.array([w, h])
        if "f_lmd" in want:
            res["f_lmd"] = lmd(lp, lr, (h, w), "face")
            frame_vals["f_lmd"] = landmark_distance(lp * scale, lr * scale)
        if "m_lmd" in want:
            res["m_lmd"] = lmd(lp, lr, (h, w), "mouth")
            frame_vals["m_lmd"] = landmark_distance(lp * scale, lr * scale, points=range(48, 68))
        if "akd" in want:
            res["akd"] = akd(lp, lr)
            frame_vals["akd"] = landmark_distance(lp, lr)

    def evaluate(self, pred, ref=None, source=None, *, driving=None, per_frame: bool = False) -> dict:
        """Metrics of one clip.

        Args:
            pred: generated frames, ``(N, H, W, 3)`` uint8 RGB.
            ref: ground-truth / driving frames of the same shape (needed for PSNR, SSIM, F-LMD, M-LMD,
                AKD, FID; without it those are listed under ``"not_computed"``).
            source: the source image ``(H', W', 3)`` uint8: CSIM compares every frame with it.  Without
                it CSIM compares ``pred[i]`` with ``ref[i]``.
            driving: the driving frames ``(N, H'', W'', 3)`` uint8 that produced ``pred`` (frame ``t`` drove
                ``pred[t]``): with ``source``, enables ``identity_shift`` (toward the driver, see
                :mod:`plugtalk.metrics.identity_shift`; per frame also ``csim_output_driving`` and
                ``csim_source_driving``).
            per_frame: also return per-frame values under ``"per_frame"``.

        Returns:
            A dict: each requested metric's mean over frames (``psnr`` dB, ``ssim`` [-1, 1], ``csim``
            [-1, 1], ``f_lmd``/``m_lmd`` px at 256 px, ``akd`` px, ``niqe`` (lower better), ``cpbd``
            [0, 1], ``fid``); ``frames``; ``skipped_frames`` ({"csim": k, "landmarks": k}: frames left out
            of face metrics for want of a face); ``face_frames_skipped`` (frames left out of at least
            one face metric); ``csim_encoder``, ``landmark_detector``, ``fid_features`` (what was
            used; CSIM with a non-ArcFace encoder says so); ``not_computed`` ({metric: reason});
            ``warnings`` (list of str).

        Raises:
            InputError: bad frames, or ``ref`` of another shape than ``pred``.
        """
        p, _ = image_batch(pred, "pred")
        r = None
        if ref is not None:
            r, _ = image_batch(ref, "ref")
            if r.shape != p.shape:
                raise InputError(f"pred {p.shape} and ref {r.shape} must have the same shape")
        n = len(p)
        res: dict = {"frames": n, "skipped_frames": {}, "not_computed": {}, "warnings": []}
        want = self._wanted(p, r, source, driving, res["not_computed"])
        d = None
        if "identity_shift" in want:
            d, _ = image_batch(driving, "driving")
            if len(d) != n:
                raise InputError(f"{n} pred frames but {len(d)} driving frames")
        frame_vals = self._pixel_metrics(want, p, r)
        extra_frame_vals: dict[str, np.ndarray] = {}
        skipped_any = np.zeros(n, dtype=bool)
        identity = "csim" in want or "identity_shift" in want
        landmarks = any(m in want for m in _LANDMARK_METRICS)
        if identity or landmarks:
            pbox = self._boxes(p, "pred")
            rbox = self._boxes(r, "ref") if r is not None and (landmarks or source is None) else None
            if identity:
                extra_frame_vals = self._identity_metrics(want, p, r, source, d, pbox, rbox, res, frame_vals,
                                                          skipped_any)
            if landmarks:
                self._landmark_metrics(want, p, r, pbox, rbox, res, frame_vals, skipped_any)
        res["face_frames_skipped"] = int(skipped_any.sum())

        if "fid" in want:
            res["fid_features"] = self.fid_extractor.name
            try:
                res["fid"] = fid(p, r, self.fid_extractor)
            except InputError as err:
                res["not_computed"]["fid"] = str(err)

        for m, v in frame_vals.items():
            res.setdefault(m, _nanmean(v))
        ordered = {m: res.pop(m) for m in self.metrics if m in res}
        res = {**ordered, **res}
        if per_frame:
            res["per_frame"] = {m: v.tolist() for m, v in {**frame_vals, **extra_frame_vals}.items()}
        return res
