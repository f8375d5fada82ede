"""``--protocol fixtalk-mead-audio`` (FixTalk Tab. 3): audio-driven talking heads on the MEAD test split.

Each test clip with sound is rendered by :func:`plugtalk.animate.animate` with the clip's wav driving the
mouth through EDTalk's audio-to-mouth model (``--audio-checkpoint``) and the clip itself as the pose and
expression reference (EDTalk suppl. 1.2: "we use the video itself as an expression reference"), from a
source frame with the ``neutral`` emotion label of the same speaker (the first frame of that speaker's first
neutral clip in the manifest; without one, the clip's own first frame, said in the row).  Scored against the
true frames (``self_frames`` frames evenly after frame 0, at 256 px): PSNR, SSIM, M-LMD and F-LMD (dlib
landmarks, px at 256 px), and with a SyncNet file the lip-sync confidence and distance of the whole render
against the clip's wav (:func:`plugtalk.metrics.sync.sync_confidence`).  A model without an audio-driven mouth
is reported as not run, with animate's reason.  With an emotion classifier (``--emotion-weights``, ONNX:
:mod:`plugtalk.metrics.emotion`) each render's emotion is predicted from all its frames and scored against the
clip's ``emotion`` label (``acc_emo``: 100 or 0 per clip, so its mean is Acc_emo in %); the classifier's own
accuracy on the real clips is reported beside it.

Each scored clip is appended to ``<out>/audio_rows.jsonl`` as it is done; ``--resume`` keeps the rows of an
interrupted run whose clip, frames, models and audio model are unchanged and renders only the others.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from .pairs import frame_indices
from .runner import SCORE_SIZE, ModelSpec, clip_frames, file_stamp, resume_rows

#: the rows file of the audio protocol in the output folder (one JSON line per scored clip)
AUDIO_ROWS = "audio_rows.jsonl"

__all__ = ["audio_items", "run_audio_protocol"]


def audio_items(data: Path, split: str) -> list[dict]:
    """The clips of ``split`` that have a wav: ``{"clip", "identity", "wav", "source", "source_note", "labels"}``.

    Raises:
        InputError: no manifest, or no clip with sound in the split.
    """
    from ..data.manifest import read_manifest

    records = read_manifest(data)
    if not records:
        raise InputError(f"--data {str(data)!r}: fixtalk-mead-audio needs a plugtalk prepare folder (manifest.jsonl "
                         "with MEAD's emotion labels and audio)")
    chosen = sorted((r for r in records.values() if r.split == split and r.audio), key=lambda r: r.clip)
    if not chosen:
        raise InputError(f"--data {str(data)!r}: no {split!r} clip with audio in the manifest")
    neutral = {}
    for r in sorted(records.values(), key=lambda r: r.clip):
        if str(r.labels.get("emotion", "")).lower() == "neutral":
            neutral.setdefault(r.identity, r.clip)
    out = []
    for r in chosen:
        src = neutral.get(r.identity)
        out.append({"clip": data / r.clip, "identity": r.identity, "wav": data / r.audio, "labels": dict(r.labels),
                    "source": data / (src or r.clip),
                    "source_note": "first frame of the speaker's neutral clip" if src else
                    "no neutral clip of this speaker: the clip's own first frame"})
    return out


def _score(scorer, out: np.ndarray, truth: np.ndarray) -> dict:
    from ..metrics import psnr, ssim
    from ..metrics.landmarks import MOUTH, landmark_distance
    from .scoring import nanmean

    lm_o = scorer.landmarks(out, scorer.boxes(out))
    lm_t = scorer.landmarks(truth, scorer.boxes(truth))
    return {"psnr": nanmean(np.atleast_1d(psnr(out, truth))), "ssim": nanmean(np.atleast_1d(ssim(out, truth))),
            "m_lmd": nanmean(landmark_distance(lm_o, lm_t, points=MOUTH)),
            "f_lmd": nanmean(landmark_distance(lm_o, lm_t)), "frames": len(out)}


def _sync_scores(syncnet, out: np.ndarray, wav: Path, fps: float) -> dict:
    """``{"sync_conf", "sync_dist", "sync_offset"}`` of a whole render against its wav."""
    from ..io.audio import EDTALK_MEL, audio_mel_windows, load_audio
    from ..metrics.sync import sync_confidence

    samples = load_audio(wav, EDTALK_MEL.sample_rate)
    mel = audio_mel_windows(samples, EDTALK_MEL.sample_rate, fps, num_frames=len(out))
    r = sync_confidence(syncnet, out, mel)
    return {"sync_conf": r["confidence"], "sync_dist": r["distance"], "sync_offset": r["offset"]}


def _emotion_scores(classifier, out: np.ndarray, labels: dict) -> dict:
    """``{"emotion", "acc_emo"}`` of one render: the predicted emotion, and 100 / 0 against the clip's label (NaN
    for a clip without one)."""
    pred = classifier.predict_clip(out)
    truth = labels.get("emotion")
    return {"emotion": pred, "acc_emo": float("nan") if truth is None else 100.0 * (pred == str(truth).lower())}


def render_audio(model, audio_model, item: dict, frames: int, tmp: Path) -> np.ndarray:
    """``(frames, H, W, 3)`` uint8 output of one audio-driven clip (lossless, no cropping)."""
    from ..animate import AnimateOptions, animate
    from ..io.video import read_frames

    source = clip_frames(Path(item["source"]), (0,))[0]
    out = tmp / f"{Path(item['clip']).stem}.mp4"
    animate(model, source, out, drivers={"driving": item["clip"]}, controls={"audio": item["wav"]},
            companions={"edtalk-audio": audio_model},
            options=AnimateOptions(crop_source=False, crop_driving=False, lossless=True, max_frames=frames,
                                   mux_sound=False))
    return read_frames(out)


def run_audio_protocol(settings, models: list[ModelSpec], status: dict[str, str], log=print) -> tuple[list, dict]:
    """Render and score every test clip with every model -> ``(rows, {model: why not run})``."""
    from ..io.images import resize_square
    from ..io.video import probe_video
    from ..weights.load import load_animator, load_audio_model
    from .scoring import Scorer

    items = audio_items(Path(settings.data), settings.split)
    log(f"{len(items)} {settings.split} clips with audio")
    not_run: dict[str, str] = {}
    if settings.audio_checkpoint is None:
        why = "not run: needs EDTalk's audio-to-mouth weights (--audio-checkpoint Audio2Lip.pt)"
        return [], {m.label: why for m in models}
    audio_model = load_audio_model(settings.audio_checkpoint)[0].eval()
    syncnet = None
    if not status.get("sync_conf", "not run").startswith("not run"):
        from ..train.syncnet import load_syncnet

        syncnet = load_syncnet(settings.syncnet_weights)
    classifier = None
    if not status.get("acc_emo", "not run").startswith("not run"):
        from ..metrics.emotion import EmotionClassifier

        classifier = EmotionClassifier(settings.emotion_weights)
    loaded = {m.label: load_animator(m.checkpoint, m.backbone).model.eval() for m in models if m.renderer is None}
    not_run.update({m.label: "not run: a renderer, not an animator" for m in models if m.renderer is not None})
    scorer = Scorer()
    rows = []
    cache = Path(settings.out) / AUDIO_ROWS
    done = resume_rows(cache, [cache], settings.resume)
    cache.parent.mkdir(parents=True, exist_ok=True)
    stamps = {m.label: m.stamp for m in models}
    audio_stamp = f"{Path(settings.audio_checkpoint).name}:{file_stamp(settings.audio_checkpoint)}"
    if syncnet is not None:
        audio_stamp += f"; {Path(settings.syncnet_weights).name}:{file_stamp(settings.syncnet_weights)}"
    if classifier is not None:
        audio_stamp += f"; {Path(settings.emotion_weights).name}:{file_stamp(settings.emotion_weights)}"
    with tempfile.TemporaryDirectory(prefix="plugtalk-bench-audio-") as tmp, open(cache, "a") as sink:
        for item in items:
            key = json.dumps([str(item["clip"]), settings.self_frames, stamps, audio_stamp], sort_keys=True)
            if key in done:  # scored by an interrupted run
                rows.append(done[key])
                not_run.update(done[key].get("not_run", {}))
                continue
            t0 = time.perf_counter()
            info = probe_video(item["clip"])
            n = info.frame_count
            idx = frame_indices(n, settings.self_frames, start=1)
            truth = resize_square(clip_frames(Path(item["clip"]), tuple(idx)), SCORE_SIZE)
            row = {"key": Path(item["clip"]).stem, "identity": item["identity"], "labels": item["labels"],
                   "source": Path(item["source"]).name, "source_note": item["source_note"], "frames": idx,
                   "scores": {}}
            if classifier is not None:  # the classifier on the real clip: how far its Acc_emo can be trusted
                row["truth_scores"] = _emotion_scores(classifier, clip_frames(Path(item["clip"]), tuple(range(n))),
                                                      item["labels"])
            for label, model in loaded.items():
                if label in not_run:
                    continue
                try:
                    out = render_audio(model, audio_model, item, n, Path(tmp))
                except InputError as e:
                    not_run[label] = f"not run: {e}"
                    row.setdefault("not_run", {})[label] = not_run[label]
                    continue
                keep = [i for i in idx if i < len(out)]
                row["scores"][label] = _score(scorer, resize_square(out[keep], SCORE_SIZE), truth[:len(keep)])
                if syncnet is not None:
                    row["scores"][label].update(_sync_scores(syncnet, out, Path(item["wav"]), info.fps))
                if classifier is not None:
                    row["scores"][label].update(_emotion_scores(classifier, out, item["labels"]))
            row["seconds"] = time.perf_counter() - t0
            row["cache_key"] = key
            sink.write(json.dumps(row) + "\n")
            sink.flush()
            rows.append(row)
    return rows, not_run
