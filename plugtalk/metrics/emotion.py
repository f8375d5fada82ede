"""Emotion accuracy (Acc_emo, FixTalk Tab. 3; EDTalk Tab. 1) with a user-supplied emotion classifier.

FixTalk and EDTalk report Acc_emo without naming the classifier they used, so plugtalk implements none: any
frame classifier exported to ONNX runs here (read by onnxruntime, extra ``plugtalk[onnx]``: an ONNX file is a
graph of tensor operations, so nothing is unpickled).  An optional JSON sidecar (``emo.onnx.json``, else
``emo.json``, beside ``emo.onnx``) says how to feed it::

    {"classes": ["angry", "contempt", ...],   # output k's emotion (default: MEAD's eight, below)
     "size": 224,                             # input side S (default: the graph's static H, else 224)
     "mean": [0.485, 0.456, 0.406],           # RGB in [0, 1], then (x - mean) / std (default: ImageNet's)
     "std": [0.229, 0.224, 0.225],
     "output": "logits"}                      # or "probabilities"

Input ``(N, 3, S, S)`` float32; output ``(N, K)`` with ``K == len(classes)``.  A clip's emotion is the arg max of
its frames' mean class probabilities; Acc_emo is the share of clips (%) whose predicted emotion is their label
(compared lower-case).  The numbers are on the paper's scale only with the paper's classifier, which is unknown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["MEAD_EMOTIONS", "EmotionClassifier", "emotion_accuracy"]

#: MEAD's eight emotions (its folder names), in alphabetical order: the default class order
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
_DEFAULTS = {"classes": list(MEAD_EMOTIONS), "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
             "output": "logits"}
MAX_SIDE = 1024  #: the largest input side accepted
BATCH = 32  #: frames per classifier call


class EmotionClassifier:
    """A user's ONNX emotion classifier with its sidecar's input convention (see the module docstring).

    Raises:
        InputError: missing or unreadable file (onnxruntime's reason), a sidecar that is not valid JSON or has bad
            values, or an output width that is not the number of classes.
        MissingExtra: onnxruntime is not installed (``plugtalk[onnx]``).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ..deploy.onnx_runtime import open_session

        self.path = Path(path)
        self.session = open_session(self.path, threads=threads)
        self.input = self.session.get_inputs()[0]
        cfg = {**_DEFAULTS, **self._sidecar()}
        self.classes = tuple(str(c).lower() for c in cfg["classes"])
        shape = list(self.input.shape)
        static = shape[2] if len(shape) == 4 and isinstance(shape[2], int) else None
        self.size = int(cfg.get("size") or static or 224)
        self.mean = np.asarray(cfg["mean"], np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(cfg["std"], np.float32).reshape(1, 3, 1, 1)
        self.logits = cfg["output"] == "logits"
        self._check(static, cfg)

    def _sidecar(self) -> dict:
        side = self.path.with_name(self.path.name + ".json")
        if not side.is_file():
            side = self.path.with_suffix(".json")
        if not side.is_file():
            return {}
        try:
            cfg = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"emotion classifier sidecar {str(side)!r}: not valid JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise InputError(f"emotion classifier sidecar {str(side)!r}: expected a JSON object")
        unknown = sorted(set(cfg) - {"classes", "size", "mean", "std", "output"})
        if unknown:
            raise InputError(f"emotion classifier sidecar {str(side)!r}: unknown keys {unknown}")
        return cfg

    def _check(self, static: int | None, cfg: dict) -> None:
        where = f"emotion classifier {self.path.name!r}"
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise InputError(f"{where}: 'classes' must be distinct names, got {list(cfg['classes'])}")
        if not 8 <= self.size <= MAX_SIDE or (static is not None and static != self.size):
            raise InputError(f"{where}: input side {self.size} (the graph's: {static}); expected 8..{MAX_SIDE} "
                             "and the graph's own when it has one")
        if self.mean.size != 3 or self.std.size != 3 or not (self.std > 0).all():
            raise InputError(f"{where}: 'mean' and 'std' need 3 values each, std > 0")
        if cfg["output"] not in ("logits", "probabilities"):
            raise InputError(f"{where}: 'output' is 'logits' or 'probabilities', got {cfg['output']!r}")
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.classes):
            raise InputError(f"{where}: {width} outputs, but {len(self.classes)} classes "
                             f"({', '.join(self.classes)}); give the classes in a sidecar {self.path.name}.json")

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB face crops -> ``(T, K)`` class probabilities (float64, rows sum to 1).

        Raises:
            InputError: not a ``(T, H, W, 3)`` uint8 array, or an output of another width than the classes.
        """
        from ..io.images import resize_square

        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise InputError(f"emotion classifier: expected (T, H, W, 3) uint8 frames, got {frames.shape} "
                             f"{frames.dtype}")
        out = []
        for i in range(0, len(frames), BATCH):
            x = resize_square(frames[i:i + BATCH], self.size).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            y = np.asarray(self.session.run(None, {self.input.name: (x - self.mean) / self.std})[0], np.float64)
            if y.ndim != 2 or y.shape[1] != len(self.classes):
                raise InputError(f"emotion classifier {self.path.name!r}: output {y.shape}, expected "
                                 f"(N, {len(self.classes)})")
            if self.logits:
                y = np.exp(y - y.max(1, keepdims=True))
            out.append(y / y.sum(1, keepdims=True))
        return np.concatenate(out)

    def predict_clip(self, frames: np.ndarray) -> str:
        """The emotion of a clip ``(T, H, W, 3)`` uint8: the arg max of its frames' mean probabilities."""
        return self.classes[int(np.argmax(self.probabilities(frames).mean(0)))]


def emotion_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Acc_emo (%): the share of clips whose predicted emotion equals their label (lower-case comparison).

    Raises:
        InputError: the two lists differ in length, or are empty.
    """
    if len(predicted) != len(truth) or not predicted:
        raise InputError(f"emotion_accuracy: {len(predicted)} predictions for {len(truth)} labels")
    return 100.0 * float(np.mean([str(p).lower() == str(t).lower() for p, t in zip(predicted, truth)]))
