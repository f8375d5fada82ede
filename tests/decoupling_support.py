"""Planted data for EDTalk's decoupling stages: synthetic 32 px "faces" whose head pose (horizontal
position of the head), mouth opening and brow height vary independently, written as clip folders."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image, ImageDraw

SIZE = 32
#: rows of the mouth, as fractions of the crop (the dataset's mouth box in these tests)
MOUTH_BOX = (0.62, 0.88, 0.2, 0.8)
SKINS = [(220, 180, 150), (170, 120, 90), (240, 210, 190), (120, 80, 60)]


def face(pose: float, mouth: float, brow: float = 0.0, skin=(220, 180, 150), size: int = SIZE) -> np.ndarray:
    """``(size, size, 3)`` uint8: head shifted by ``pose`` in [-1, 1] (x 4 px), mouth opened by ``mouth`` in
    [0, 1], brows (two 7 x 3 px bars) raised by ``brow`` in [0, 1] (x 5 px: a feature as large as the mouth, so
    that a 32 px model trained for a minute renders it).  The mouth stays inside :data:`MOUTH_BOX` for every
    value."""
    s = size / 32
    img = Image.new("RGB", (size, size), (60, 90, 120))
    d = ImageDraw.Draw(img)
    cx = 16 * s + 4 * s * pose
    d.ellipse([cx - 11 * s, 3 * s, cx + 11 * s, 31 * s], fill=skin)
    for ex in (-5, 5):  # eyes move with the head
        d.ellipse([cx + (ex - 1.5) * s, 11 * s, cx + (ex + 1.5) * s, 13.5 * s], fill=(30, 30, 30))
        by = (9.0 - 5.0 * brow) * s
        d.rectangle([cx + (ex - 3.5) * s, by - 1.5 * s, cx + (ex + 3.5) * s, by + 1.5 * s],
                    fill=(70, 40, 20))
    half = (0.5 + 3.5 * mouth) * s  # mouth centred at x = 16 px: it lies in the mouth box whatever the pose
    d.rectangle([10 * s, 24 * s - half, 22 * s, 24 * s + half], fill=(40, 10, 20))
    return np.asarray(img)


def write_clips(root, identities: int = 3, clips_per_identity: int = 2, frames: int = 12, seed: int = 0,
                emotions: bool = False, only: str | None = None, audio: bool = False):
    """Clip folders ``<root>/idK__cJ/NNN.png`` with random independent pose and mouth per frame; with
    ``emotions`` the first clip of each identity is ``neutral`` (brows down) and the others ``happy``
    (brows up), listed in ``<root>/labels.json``; ``only``: write only the clips of that emotion; ``audio``:
    a 16 kHz ``<root>/idK__cJ.wav`` of the clip's length (25 fps) beside each.  Returns ``root``."""
    rng = np.random.default_rng(seed)
    labels = {}
    for k in range(identities):
        for j in range(clips_per_identity):
            name = f"id{k}__c{j}"
            emotion = "neutral" if j == 0 else "happy"
            brow = 1.0 if (emotions and emotion == "happy") else 0.0
            if only is not None and emotion != only:
                continue
            folder = root / name
            folder.mkdir(parents=True)
            for i in range(frames):
                img = face(rng.uniform(-1, 1), rng.uniform(0, 1), brow, SKINS[k % len(SKINS)])
                Image.fromarray(img).save(folder / f"{i:03d}.png")
            labels[name] = {"emotion": emotion}
            if audio:
                import soundfile

                t = np.arange(frames * 640) / 16000.0
                loud = np.repeat(rng.uniform(0.05, 0.5, frames), 640)
                soundfile.write(root / f"{name}.wav", (loud * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    if emotions:
        (root / "labels.json").write_text(json.dumps(labels))
    return root


def head_x(img: np.ndarray) -> float:
    """Head position (px): centroid column of the non-background pixels on the cheek rows 14-19."""
    m = (np.abs(img[14:20].astype(float) - np.array([60, 90, 120.0])).sum(-1) > 80).astype(float)
    return float((m.sum(0) * np.arange(img.shape[1])).sum() / max(m.sum(), 1.0))


def mouth_open(img: np.ndarray) -> float:
    """Dark area (px) in the mouth region (rows 19-29, columns 10-21)."""
    return float(np.clip((150 - img[19:30, 10:22].astype(float).mean(-1)) / 80, 0, 1).sum())


def brow_row(img: np.ndarray) -> float:
    """Mean row of the dark (brow) pixels on rows 4-10 over the eye columns."""
    dark = np.clip((120 - img[4:11, 8:24].astype(float).mean(-1)) / 60, 0, 1)
    return float((dark.sum(1) * np.arange(4, 11)).sum() / max(dark.sum(), 1e-6))
