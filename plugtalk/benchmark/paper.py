"""``--protocol fixtalk-hdtf`` (FixTalk Tab. 1) and ``fixtalk-mead-audio`` (Tab. 3): the paper's tables on our
run, with the paper's numbers printed beside as reference rows (labelled so; they are not our results).

Metrics that need a pretrained network run only with a weights file the user supplies; the report says which
network each metric ran with, and which metric did not run and why (no weights given, a weights file that does
not exist, or a missing optional package).  Nothing is downloaded.

* **fixtalk-hdtf** (video-driven, HDTF test split): each test clip reconstructed from its first frame
  (self-reenactment, absolute motion) -> PSNR, F-LMD, CSIM (output vs the true frame: ArcFace with
  ``--arcface-weights``, else dlib's ResNet, labelled a substitute), NIQE, CPBD; FID needs Inception-v3
  weights.
* **fixtalk-mead-audio** (audio-driven, MEAD test split): PSNR, SSIM, M-LMD, F-LMD, emotion accuracy (a user's
  ONNX emotion classifier, :mod:`plugtalk.metrics.emotion`) and sync confidence / distance (a user's SyncNet
  file, :mod:`plugtalk.metrics.sync`).
"""

from __future__ import annotations

import time
from pathlib import Path

from .pairs import load_data, self_pairs, spread
from .report import write_report
from .runner import SCORE_SIZE, ModelSpec, evaluate_pairs
from .tables import metric_table

__all__ = ["PAPER_TABLES", "run_fixtalk_hdtf", "run_fixtalk_mead_audio", "weight_status"]

#: The paper's numbers (FixTalk, ICCV 2025, main text), printed as labelled reference rows.
PAPER_TABLES = {
    "fixtalk-hdtf": {
        "caption": "FixTalk Tab. 1: video-driven comparisons on HDTF (512 px in the paper)",
        "metrics": ("psnr", "f_lmd", "fid", "csim", "niqe", "cpbd"),
        "rows": {"DPE": (26.078, 1.232, 23.126, 0.567, 42.96, 0.183),
                 "EmoPor": (26.827, 1.413, 26.329, 0.493, 29.88, 0.178),
                 "EDTalk": (26.504, 1.111, 13.172, 0.594, 42.41, 0.221),
                 "LivePor": (27.054, 1.119, 12.883, 0.568, 15.93, 0.244),
                 "X-Por": (22.884, 1.498, 46.552, 0.505, 28.61, 0.236),
                 "FYE": (23.441, 1.513, 42.681, 0.544, 18.36, 0.247),
                 "FixTalk": (27.164, 1.093, 12.715, 0.613, 13.44, 0.282)}},
    "fixtalk-mead-audio": {
        "caption": "FixTalk Tab. 3: audio-driven comparisons on MEAD",
        "metrics": ("psnr", "ssim", "m_lmd", "f_lmd", "acc_emo", "sync_conf"),
        "rows": {"SadTalker": (19.042, 0.606, 2.038, 2.335, 14.25, 7.065),
                 "AniTalker": (19.714, 0.614, 1.903, 2.277, 15.62, 6.638),
                 "Hallo": (19.061, 0.598, 1.874, 2.294, 18.69, 6.993),
                 "EchoMimic": (18.884, 0.600, 1.793, 2.110, 17.35, 5.190),
                 "FlowVQTalker": (21.572, 0.709, 1.551, 1.304, 61.53, 6.901),
                 "EDTalk": (21.628, 0.722, 1.537, 1.290, 67.32, 8.115),
                 "FixTalk": (22.382, 0.743, 1.314, 1.215, 68.25, 8.009)}},
}
_LABEL = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "m_lmd": "M-LMD ↓", "f_lmd": "F-LMD ↓", "fid": "FID ↓", "csim": "CSIM ↑",
          "niqe": "NIQE ↓", "cpbd": "CPBD ↑", "acc_emo": "Acc_emo ↑", "sync_conf": "Sync_conf ↑",
          "sync_dist": "Sync_dist ↓"}


def weight_status(option: str, path: Path | None, network: str) -> tuple[bool, str]:
    """``(runs, why)`` for a metric needing ``network`` weights given by ``option`` (never silently skipped)."""
    if path is None:
        return False, f"not run: needs {network} weights ({option} PATH; nothing is downloaded)"
    if not Path(path).is_file():
        return False, f"not run: the {network} weights file {str(path)!r} ({option}) does not exist"
    return True, f"{network} ({Path(path).name})"


def _emotion_status(path: Path | None) -> str:
    """The emotion classifier's status line: it runs with a given ONNX file and an installed onnxruntime."""
    runs, why = weight_status("--emotion-weights", path, "emotion classifier (ONNX)")
    if not runs:
        return why
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return "not run: the emotion classifier needs onnxruntime (pip install 'plugtalk[onnx]')"
    return why + " (a user's classifier: the papers do not name theirs, so not on the paper's scale)"


def _classifier_line(rows: list[dict]) -> list[str]:
    """The emotion classifier's own accuracy on the real test clips (empty without a classifier)."""
    import math

    known = [r["truth_scores"]["acc_emo"] for r in rows if "truth_scores" in r]
    known = [v for v in known if math.isfinite(v)]
    if not known:
        return []
    return [f"The emotion classifier on the real test clips (the ceiling of the renders' Acc_emo): "
            f"{sum(known) / len(known):.1f} % over {len(known)} clips.", ""]


def _paper_lines(protocol: str) -> list[str]:
    t = PAPER_TABLES[protocol]
    lines = [f"Reference rows: {t['caption']}, as printed in the paper (not our run; other data, resolution and "
             "networks):", "", "| method (paper) | " + " | ".join(_LABEL[m] for m in t["metrics"]) + " |",
             "|" + "---|" * (len(t["metrics"]) + 1)]
    lines += [f"| {name} (paper) | " + " | ".join(f"{v:g}" for v in vals) + " |" for name, vals in t["rows"].items()]
    return lines + [""]


def _status_lines(status: dict[str, str]) -> list[str]:
    return ["| metric | network / status |", "|---|---|", *(f"| {_LABEL.get(m, m)} | {s} |" for m, s in status.items()),
            ""]


def run_fixtalk_hdtf(settings, models: list[ModelSpec], log=print) -> dict | None:
    """Tab. 1 on the data folder's test split (see the module docstring)."""
    t0 = time.perf_counter()
    data = load_data(settings.data, split=settings.split)
    own = spread(self_pairs(data), settings.max_self)
    log(f"{data.layout}: {len(own)} test clips reconstructed from their first frame")
    status = {"psnr": "no network", "f_lmd": "dlib 68-point landmarks",
              "csim": (f"ArcFace ({Path(settings.arcface_weights).name}), output vs the true frame"
                       if settings.arcface_weights else
                       "dlib ResNet face descriptor, output vs the true frame (a substitute: the paper used ArcFace; "
                       "not comparable)"),
              "niqe": "NIQE, pristine-image parameters (no network)", "cpbd": "CPBD (no network)"}
    fid_ok, status["fid"] = weight_status("--inception-weights", settings.inception_weights,
                                          "Inception-v3 (torchvision architecture)")
    not_run = {m: s for m, s in status.items() if s.startswith("not run")}
    for m, why in not_run.items():
        log(f"warning: {m}: {why}")
    rows = evaluate_pairs(own, models, frames=settings.frames, self_frames=settings.self_frames, jobs=settings.jobs,
                          cache_dir=settings.out, resume=settings.resume, self_quality=True,
                          fid_weights=str(settings.inception_weights) if fid_ok else None,
                          arcface_weights=None if settings.arcface_weights is None else str(settings.arcface_weights),
                          log=log)
    if rows is None:
        return None
    labels = [m.label for m in models]
    metrics = ("psnr", "f_lmd", "csim", "niqe", "cpbd")
    lines, summary = metric_table(rows, [*labels, "copy-source"], metrics, labels[0] if len(labels) > 1 else None,
                                  seed=settings.seed)
    if fid_ok:
        fid = _fid(rows, labels, Path(settings.out) / "features")
        for m, v in fid.items():
            if isinstance(v, str):
                not_run[f"fid ({m})"] = v
            else:
                summary.setdefault(m, {})["fid"] = {"value": v, "frames": sum(len(r["frames"]) for r in rows)}
        lines += ["", "FID over every scored frame (one value per model, not per pair): "
                  + ", ".join(f"{m} {v:.3f}" if not isinstance(v, str) else f"{m}: {v}" for m, v in fid.items())]
    out = ["# plugtalk benchmark: FixTalk Tab. 1 protocol (video-driven, HDTF test split)", "",
           f"Data: {settings.data} ({data.layout}); {len(rows)} clips, {settings.self_frames} frames each after the "
           f"source frame, scored at {SCORE_SIZE} px.", "", "Metrics and networks:", "", *_status_lines(status),
           "## Our run", "", *lines, "", "## The paper", "", *_paper_lines("fixtalk-hdtf"),
           f"time: {time.perf_counter() - t0:.0f} s wall"]
    report = {"protocol": "fixtalk-hdtf", "networks": status, "not_run": not_run, "summary": summary,
              "paper": PAPER_TABLES["fixtalk-hdtf"], "models": [m.label for m in models], "rows": rows,
              "timing": {"seconds": time.perf_counter() - t0}}
    write_report(Path(settings.out), out, report)
    return report


def _fid(rows: list[dict], labels: list[str], folder: Path) -> dict[str, float | str]:
    """FID of each model's outputs against the true frames, over all pairs' stored features."""
    import numpy as np

    from ..errors import InputError
    from ..metrics.fid import fid_from_features

    feats: dict[str, list] = {"truth": [], **{m: [] for m in labels}}
    for r in rows:
        with np.load(folder / r["fid_features"]) as f:
            for k in feats:
                feats[k].append(f[k])
    out: dict[str, float | str] = {}
    truth = np.concatenate(feats["truth"])
    for m in labels:
        try:
            out[m] = float(fid_from_features(np.concatenate(feats[m]), truth))
        except InputError as e:
            out[m] = f"not run: {e}"
    return out


def run_fixtalk_mead_audio(settings, models: list[ModelSpec], log=print) -> dict | None:
    """Tab. 3: audio-driven rendering of the MEAD test clips (:mod:`plugtalk.benchmark.audio`) scored for PSNR,
    SSIM, M-LMD and F-LMD, with ``--syncnet-weights`` the sync confidence and distance
    (:func:`plugtalk.metrics.sync.sync_confidence`) and with ``--emotion-weights`` (ONNX) the emotion accuracy."""
    from .audio import run_audio_protocol

    t0 = time.perf_counter()
    status = {m: "dlib 68-point landmarks" if "lmd" in m else "no network" for m in ("psnr", "ssim", "m_lmd", "f_lmd")}
    status["acc_emo"] = _emotion_status(settings.emotion_weights)
    status["sync_conf"] = weight_status("--syncnet-weights", settings.syncnet_weights, "SyncNet")[1]
    if not status["sync_conf"].startswith("not run"):
        status["sync_conf"] += (" (Wav2Lip-format expert, unit embeddings: not on syncnet_python's scale, so not "
                                "comparable with the paper's Sync_conf)")
    status["sync_dist"] = status["sync_conf"]
    rows, model_not_run = run_audio_protocol(settings, models, status, log=log)
    not_run = {m: s for m, s in status.items() if s.startswith("not run")}
    not_run.update({f"model {m}": why for m, why in model_not_run.items()})
    for m, why in not_run.items():
        log(f"warning: {m}: {why}")
    labels = [m.label for m in models if m.label not in model_not_run]
    metrics = (("psnr", "ssim", "m_lmd", "f_lmd") + (() if "sync_conf" in not_run else ("sync_conf", "sync_dist"))
               + (() if "acc_emo" in not_run else ("acc_emo",)))
    lines, summary = (metric_table(rows, labels, metrics, labels[0] if len(labels) > 1 else None, seed=settings.seed)
                      if labels and rows else (["(no model ran)"], {}))
    out = ["# plugtalk benchmark: FixTalk Tab. 3 protocol (audio-driven, MEAD test split)", "",
           f"Data: {settings.data}; {len(rows)} test clips with audio, {settings.self_frames} frames each after "
           f"frame 0, scored at {SCORE_SIZE} px; audio drives the mouth, the clip itself is the pose and expression "
           "reference, the source is a neutral frame of the same speaker.", "", "Metrics and networks:", "",
           *_status_lines(status), *(f"- model {m}: {why}" for m, why in model_not_run.items()), "",
           "## Our run", "", *lines, "", *_classifier_line(rows), "## The paper", "",
           *_paper_lines("fixtalk-mead-audio"),
           f"time: {time.perf_counter() - t0:.0f} s wall"]
    report = {"protocol": "fixtalk-mead-audio", "networks": status, "not_run": not_run, "summary": summary,
              "paper": PAPER_TABLES["fixtalk-mead-audio"], "models": [m.label for m in models], "rows": rows,
              "timing": {"seconds": time.perf_counter() - t0}}
    write_report(Path(settings.out), out, report)
    return report
