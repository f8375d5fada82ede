"""Evaluate generated talking-head frames against reference frames and/or a source image (``plugtalk eval``).

Predicted and reference frames come from a video or a folder of images (paired by position after
sorting the file names) and are streamed in chunks through one :class:`~plugtalk.metrics.MetricSuite`
(face models loaded once), so long clips need constant memory except for FID's features.  Per-frame
values are averaged over the frames a metric could use (face metrics skip frames without a
detectable face and count them).

Metrics (see :mod:`plugtalk.metrics`): PSNR (dB, higher better), SSIM (higher), CSIM (higher: identity
kept; against ``source`` for cross-reenactment, else frame-by-frame against the reference), F-LMD and
M-LMD (px at 256 px, lower), AKD (px, lower), NIQE (lower), CPBD (higher), FID (lower; only with
user-supplied Inception weights).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .errors import InputError
from .io.images import resize_square
from .metrics.suite import ALL_METRICS, DEFAULT_METRICS, MetricSuite

__all__ = ["FrameSource", "EvalSettings", "build_suite", "evaluate_frames", "write_identity_shift_plot", "METRIC_INFO",
           "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

#: metric -> (display name, unit, "higher" | "lower" is better)
METRIC_INFO = {
    "psnr": ("PSNR", "dB", "higher"), "ssim": ("SSIM", "", "higher"), "csim": ("CSIM", "", "higher"),
    "f_lmd": ("F-LMD", "px@256", "lower"), "m_lmd": ("M-LMD", "px@256", "lower"), "akd": ("AKD", "px", "lower"),
    "niqe": ("NIQE", "", "lower"), "cpbd": ("CPBD", "", "higher"), "fid": ("FID", "", "lower"),
    "identity_shift": ("ID shift", "CSIM", "lower"),
}


class FrameSource:
    """Frames of a video file, or of a folder of images sorted by file name, streamed in batches.

    Raises:
        InputError: missing path, unreadable / corrupt / empty video, or a folder without images.
    """

    def __init__(self, path: str | os.PathLike, name: str = "frames"):
        self.path = Path(path)
        self.name = name
        self.files: list[Path] | None = None
        self.reader = None
        if not self.path.exists():
            raise InputError(f"{name}: {str(self.path)!r} does not exist")
        if self.path.is_dir():
            self.files = sorted(f for f in self.path.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise InputError(f"{name}: folder {str(self.path)!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            from .io.video import VideoReader

            self.reader = VideoReader(self.path)

    @property
    def count(self) -> int | None:
        """Number of frames if known without decoding (folders; videos that declare it)."""
        return len(self.files) if self.files is not None else self.reader.frame_count

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """``(n, H, W, 3)`` uint8 RGB batches in order."""
        if self.reader is not None:
            yield from self.reader.batches(size)
            return
        from .io.images import load_image

        for s in range(0, len(self.files), size):
            imgs = [load_image(f, min_side=1) for f in self.files[s:s + size]]
            shapes = {i.shape for i in imgs}
            if len(shapes) > 1:
                raise InputError(f"{self.name}: images in {str(self.path)!r} differ in size ({sorted(shapes)})")
            yield np.stack(imgs)

    def __str__(self) -> str:
        return str(self.path)


@dataclasses.dataclass
class EvalSettings:
    """Which metrics and models: ``metrics`` (names from :data:`~plugtalk.metrics.suite.ALL_METRICS`),
    ``identity_model`` (``"dlib"`` or ``"arcface"`` with ``arcface_weights``), ``inception_weights``
    (enables FID), ``device`` for the torch models."""

    metrics: Sequence[str] | None = None
    identity_model: str = "dlib"
    arcface_weights: str | os.PathLike | None = None
    inception_weights: str | os.PathLike | None = None
    device: str = "cpu"
    identity_shift: bool = False  # add identity_shift to the default metrics (a driving video is given)


def build_suite(settings: EvalSettings) -> tuple[MetricSuite, object | None]:
    """The metric suite (without FID) and the FID feature extractor (or ``None``).

    Raises:
        InputError: unknown metric or identity model, ArcFace without weights, FID without Inception weights.
        CheckpointError: weights that cannot be read or do not fit.
    """
    names = list(settings.metrics) if settings.metrics else list(DEFAULT_METRICS)
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; choose from {', '.join(ALL_METRICS)}")
    if settings.inception_weights is not None and "fid" not in names and not settings.metrics:
        names.append("fid")
    if settings.identity_shift and "identity_shift" not in names:  # a driving video is given for it, always
        names.append("identity_shift")
    fid_extractor = None
    if "fid" in names:
        if settings.inception_weights is None:
            raise InputError("FID needs Inception-v3 weights (--inception-weights PATH); nothing is downloaded")
        from .metrics.fid import InceptionFeatures

        fid_extractor = InceptionFeatures(settings.inception_weights, device=settings.device)
    if settings.identity_model not in ("dlib", "arcface"):
        raise InputError(f"identity model must be 'dlib' or 'arcface', got {settings.identity_model!r}")
    encoder = None
    if settings.identity_model == "arcface":
        if settings.arcface_weights is None:
            raise InputError("--identity-model arcface needs --arcface-weights PATH (an arcface_torch backbone.pth)")
        from .face.identity import ArcFaceEncoder

        encoder = ArcFaceEncoder(settings.arcface_weights, device=settings.device)
    elif settings.arcface_weights is not None:
        raise InputError("--arcface-weights is only used with --identity-model arcface")
    suite = MetricSuite([m for m in names if m != "fid"], identity_encoder=encoder)
    return suite, fid_extractor


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    return float(v[ok].mean()) if ok.any() else float("nan")


def _skip_frames(batches: Iterator[np.ndarray], skip: int) -> Iterator[np.ndarray]:
    """``batches`` without its first ``skip`` frames."""
    for b in batches:
        if skip >= len(b):
            skip -= len(b)
            continue
        yield b[skip:]
        skip = 0


def evaluate_frames(pred: FrameSource | str | os.PathLike, ref: FrameSource | str | os.PathLike | None = None, *,
                    source: np.ndarray | str | os.PathLike | None = None,
                    driving: FrameSource | str | os.PathLike | None = None,
                    settings: EvalSettings | None = None, suite: tuple[MetricSuite, object | None] | None = None,
                    chunk: int = 32, max_frames: int | None = None, resize: int | None = None, skip: int = 0,
                    on_progress: Callable[[int, int | None], None] | None = None) -> dict:
    """Metrics of predicted frames (a video or an image folder) against reference frames and/or a source.

    Frames are paired by position; if ``pred`` and ``ref`` differ in length the longer is trimmed
    to the shorter (with a warning in the result).

    Args:
        pred, ref: videos or folders of images (or :class:`FrameSource`); ``ref`` is needed for
            PSNR, SSIM, LMD, AKD and FID.
        source: the source image (file or ``(H, W, 3)`` uint8): CSIM compares every frame with it
            (identity preservation in cross-reenactment); without it CSIM compares with ``ref``.
        driving: the driving video / frames folder that produced ``pred`` (paired by position, ``skip``
            applies to it too): with ``source`` it adds ``identity_shift``, per frame
            ``CSIM(pred_t, driving_t) - CSIM(source, driving_t)`` (toward the driver: identity leakage,
            see :mod:`plugtalk.metrics.identity_shift`).
        settings: metrics and models (:class:`EvalSettings`); or ``suite`` from :func:`build_suite`
            to reuse loaded models across calls.
        chunk: frames evaluated per step (memory).
        max_frames: evaluate at most this many frames.
        resize: score every frame (pred, ref and source) resized to ``resize x resize`` px (Lanczos),
            e.g. to compare a small model's output with full-resolution references, or to give
            NIQE (96 px patches) and the face models enough pixels.
        skip: leave out the first ``skip`` frames of ``pred`` and ``ref`` (e.g. 1 in self-reenactment
            when the source is the clip's first frame: a copy of it would score PSNR ``inf``).

    Returns:
        ``{"metrics": {name: mean}, "frames", "pred", "ref", "driving", "source", "pred_frames", "ref_frames",
        "csim_reference", "csim_encoder", "landmark_detector", "fid_features", "skipped_frames",
        "face_frames_skipped", "not_computed", "warnings", "better": {name: "higher"|"lower"},
        "per_frame": {name: [value per evaluated frame, NaN where not scored]}}``; with ``driving`` the
        per-frame lists also hold ``csim_output_driving`` and ``csim_source_driving``.

    Raises:
        InputError: unreadable inputs, frames of different sizes, unknown metrics, missing weights.
    """
    from .io.images import load_image

    suite_, fid_extractor = suite if suite is not None else build_suite(settings or EvalSettings())
    p_src = _frame_source(pred, "pred")
    r_src, d_src = _frame_source(ref, "ref"), _frame_source(driving, "driving")
    src_img = load_image(source) if isinstance(source, (str, os.PathLike)) else source
    if chunk < 1:
        raise InputError(f"chunk must be >= 1, got {chunk}")
    if resize is not None and resize < 16:
        raise InputError(f"resize must be at least 16 px, got {resize}")
    if skip < 0:
        raise InputError(f"skip must be >= 0, got {skip}")
    if resize is not None and src_img is not None:
        src_img = resize_square(src_img[None], resize)[0]

    tally = _Tally()
    known = [max(c - skip, 0) for c in (p_src.count, r_src.count if r_src else None, d_src.count if d_src else None)
             if c is not None] + ([max_frames] if max_frames is not None else [])
    total = min(known) if known else None
    streams = {"pred": p_src, **({"ref": r_src} if r_src is not None else {}),
               **({"driving": d_src} if d_src is not None else {})}
    aligned = _Aligned({k: _skip_frames(v.batches(chunk), skip) for k, v in streams.items()})
    while max_frames is None or tally.frames < max_frames:
        got = aligned.next(None if max_frames is None else max_frames - tally.frames)
        if got is None:
            break
        p, r, d = (got.get(k) for k in ("pred", "ref", "driving"))
        if resize is not None:
            p, r, d = (None if x is None else resize_square(x, resize) for x in (p, r, d))
        if r is not None and p.shape[1:] != r.shape[1:]:
            raise InputError(f"pred frames are {p.shape[2]}x{p.shape[1]} but ref frames are "
                             f"{r.shape[2]}x{r.shape[1]}; evaluate frames of the same size")
        tally.add(suite_.evaluate(p, r, src_img, driving=d, per_frame=True), len(p))
        if fid_extractor is not None and r is not None:
            tally.feats_p.append(fid_extractor.features(p))
            tally.feats_r.append(fid_extractor.features(r))
        if on_progress:
            on_progress(tally.frames, total)

    n_done = tally.frames
    if n_done == 0:
        raise InputError(f"no frames to evaluate in {p_src}" + (f" / {r_src}" if r_src else "")
                         + (f" after skipping {skip}" if skip else ""))
    # lengths: the frames left in the longer input
    seen = n_done + skip
    p_total = _length(p_src, aligned.ended.get("pred", False), aligned.left("pred"), seen)
    r_total = _length(r_src, aligned.ended.get("ref", False), aligned.left("ref"), seen) if r_src else None
    if r_src is not None and max_frames is None and p_total != r_total:
        tally.note(f"pred has {p_total} frames and ref {r_total}; "
                   f"evaluated the first {n_done} pairs" + (f" after the first {skip}" if skip else ""))

    metrics = {m: _nanmean(tally.per_frame[m]) for m in suite_.metrics if m in tally.per_frame}
    if fid_extractor is not None:
        _add_fid(metrics, tally, fid_extractor, has_ref=r_src is not None)
    if "csim" in metrics:
        tally.info["csim_reference"] = "source image" if src_img is not None else "reference frames"
    _check_computed(metrics, tally.not_computed, tally.notes)
    return {"metrics": metrics, "better": {m: METRIC_INFO[m][2] for m in metrics}, "frames": n_done,
            "pred": str(p_src), "ref": str(r_src) if r_src else None, "driving": str(d_src) if d_src else None,
            "source": str(source) if isinstance(source, (str, os.PathLike)) else None,
            "pred_frames": p_total, "ref_frames": r_total, "resize": resize, "skip": skip, **tally.info,
            "skipped_frames": tally.skipped,
            "face_frames_skipped": tally.face_skipped,
            "not_computed": {k: v for k, v in tally.not_computed.items() if k not in metrics}, "warnings": tally.notes,
            "per_frame": {m: v for m, v in tally.per_frame.items() if m in metrics or m.startswith("csim_")}}


def _frame_source(value, name: str) -> "FrameSource | None":
    """``value`` as a :class:`FrameSource` named ``name`` (``None`` stays ``None``)."""
    if value is None or isinstance(value, FrameSource):
        return value
    return FrameSource(value, name)


@dataclasses.dataclass
class _Tally:
    """What the chunks of one :func:`evaluate_frames` add up to."""

    per_frame: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)
    face_skipped: int = 0
    info: dict = dataclasses.field(default_factory=dict)
    not_computed: dict[str, str] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    feats_p: list[np.ndarray] = dataclasses.field(default_factory=list)
    feats_r: list[np.ndarray] = dataclasses.field(default_factory=list)
    frames: int = 0

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def add(self, res: dict, n: int) -> None:
        """Merge one chunk's :meth:`MetricSuite.evaluate` result (``per_frame=True``) of ``n`` frames."""
        for m, v in res.pop("per_frame").items():
            self.per_frame.setdefault(m, []).extend(v)
        for k, v in res.get("skipped_frames", {}).items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        self.face_skipped += res.get("face_frames_skipped", 0)
        self.not_computed.update(res.get("not_computed", {}))
        for w in res.get("warnings", []):
            self.note(w)
        for k in ("csim_encoder", "landmark_detector"):
            if k in res:
                self.info[k] = res[k]
        self.frames += n


def _add_fid(metrics: dict[str, float], tally: _Tally, extractor, has_ref: bool) -> None:
    """FID between the predicted and reference frames' features (or why it is not computed)."""
    if not has_ref:
        tally.not_computed["fid"] = "needs reference frames (ref)"
        return
    from .metrics.fid import fid_from_features

    try:
        metrics["fid"] = fid_from_features(np.concatenate(tally.feats_p), np.concatenate(tally.feats_r))
        tally.info["fid_features"] = extractor.name
    except InputError as e:
        tally.not_computed["fid"] = str(e)


def _length(src: FrameSource, ended: bool, left: int, used: int) -> int | str:
    """Total frames of an input after evaluation: exact when it ended, else its declared count or '>N'."""
    if ended:
        return used
    if src.count is not None:
        return src.count
    return f">{used + left}"


class _Aligned:
    """Frames of several streams paired by position, independent of each stream's batch boundaries."""

    def __init__(self, iters: dict[str, Iterator[np.ndarray]]):
        self.iters = iters
        self.bufs: dict[str, np.ndarray | None] = {k: None for k in iters}
        self.ended: dict[str, bool] = {}

    def left(self, name: str) -> int:
        buf = self.bufs.get(name)
        return 0 if buf is None else len(buf)

    def next(self, limit: int | None) -> dict[str, np.ndarray] | None:
        """The next aligned chunk of every stream (at most ``limit`` frames), or ``None`` when one ended."""
        for k, it in self.iters.items():
            if self.bufs[k] is None or len(self.bufs[k]) == 0:
                self.bufs[k] = next(it, None)
                if self.bufs[k] is None:
                    self.ended[k] = True
        if self.ended:
            return None
        n = min(len(b) for b in self.bufs.values())
        if limit is not None:
            n = min(n, limit)
        out = {k: b[:n] for k, b in self.bufs.items()}
        self.bufs = {k: b[n:] for k, b in self.bufs.items()}
        return out


def _check_computed(metrics: dict[str, float], not_computed: dict[str, str], notes: list[str]) -> None:
    """Refuse a run that computed no metric at all; add a warning for each metric that is NaN (no frame had a
    detectable face, ...) so a NaN never passes as a result.

    Raises:
        InputError: naming why each asked-for metric could not be computed.
    """
    if not metrics:
        why = "; ".join(f"{m}: {w}" for m, w in not_computed.items()) or "no metric applies to these inputs"
        raise InputError(f"no metric could be computed ({why}); give --ref (reference frames) and/or --source")
    for m, v in metrics.items():
        if isinstance(v, float) and math.isnan(v):
            notes.append(f"{m} is NaN: no frame could be scored (no detectable face in the frames?)")


def write_identity_shift_plot(result: dict, path: str | os.PathLike) -> Path:
    """PNG of the per-frame identity shift of an :func:`evaluate_frames` result made with ``driving``:
    ``CSIM(pred_t, driving_t) - CSIM(source, driving_t)`` over the frame index (gaps: no face), its mean
    as a dashed line, and the two CSIM terms below.  Written atomically.

    Raises:
        InputError: the result has no per-frame identity shift (evaluated without ``driving``/``source``).
    """
    from ._optional import require
    require("matplotlib", "eval", "the identity-shift plot")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .io.atomic import save_figure

    pf = result.get("per_frame", {})
    if "identity_shift" not in pf:
        raise InputError("no per-frame identity shift to plot (evaluate with a source image and --driving)")
    shift = np.asarray(pf["identity_shift"], dtype=np.float64)
    t = np.arange(len(shift)) + int(result.get("skip") or 0)
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(3, 2))
    ax.plot(t, shift, color="tab:red", lw=1.2, marker="." if len(t) < 60 else None)
    ax.axhline(0, color="black", lw=0.8)
    mean = result.get("metrics", {}).get("identity_shift", float("nan"))
    if np.isfinite(mean):
        ax.axhline(mean, color="tab:red", ls="--", lw=1, label=f"mean {mean:+.4f}")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_ylabel("identity shift\n(> 0: toward the driver)")
    ax.set_title(f"{Path(str(result.get('pred'))).name} driven by {Path(str(result.get('driving'))).name}", fontsize=9,
                 loc="left")
    ax2.plot(t, pf.get("csim_output_driving", []), label="CSIM(output, driving)", lw=1)
    ax2.plot(t, pf.get("csim_source_driving", []), label="CSIM(source, driving)", lw=1)
    ax2.set_xlabel("frame")
    ax2.set_ylabel("CSIM")
    ax2.legend(loc="lower right", fontsize=7)
    fig.text(0.01, 0.005, f"CSIM encoder: {result.get('csim_encoder', '?')}", fontsize=6, color="gray")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
