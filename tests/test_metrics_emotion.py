"""Emotion accuracy with a user's ONNX classifier: a planted classifier (red-faced frames are "happy", blue-faced
"neutral") exported here, its sidecar conventions, and the errors for files that do not fit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plugtalk.errors import InputError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")


def planted_classifier(path, classes=("neutral", "happy"), size: int = 32, sidecar: dict | None = None):
    """An ONNX frame classifier: logit(happy) - logit(neutral) = 20 * (mean R - mean B) of the normalised input."""
    import torch
    from torch import nn

    class RedIsHappy(nn.Module):
        def forward(self, x):
            m = x.mean(dim=(2, 3))
            d = 20 * (m[:, 0] - m[:, 2])
            return torch.stack([-d, d] + [torch.zeros_like(d)] * (len(classes) - 2), dim=1)

    x = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.onnx.export(RedIsHappy(), (x,), dynamo=True, dynamic_shapes=({0: batch},), input_names=["image"],
                      output_names=["logits"], verbose=False).save(str(path))
    side = {"classes": list(classes), "mean": [0.5] * 3, "std": [0.5] * 3, **(sidecar or {})}
    path.with_name(path.name + ".json").write_text(json.dumps(side))
    return path


def _frames(rgb, n=5, size=48, seed=0):
    rng = np.random.default_rng(seed)
    base = np.broadcast_to(np.asarray(rgb, np.float64), (n, size, size, 3))
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def test_a_clip_is_the_arg_max_of_its_frames_mean_probabilities(tmp_path):
    from plugtalk.metrics.emotion import EmotionClassifier, emotion_accuracy

    clf = EmotionClassifier(planted_classifier(tmp_path / "emo.onnx"))
    assert clf.classes == ("neutral", "happy") and clf.size == 32  # the graph's static side
    red, blue = _frames((200, 90, 60)), _frames((60, 90, 200))
    p = clf.probabilities(red)
    assert p.shape == (5, 2) and np.allclose(p.sum(1), 1) and (p[:, 1] > 0.9).all()
    assert clf.predict_clip(red) == "happy" and clf.predict_clip(blue) == "neutral"
    # a clip whose frames disagree goes by the mean probability, not a vote: two clearly red frames outweigh
    # three barely blue ones (each p(happy) ~0.4)
    barely = _frames((100, 90, 101), n=3)
    assert (clf.probabilities(barely)[:, 1] < 0.5).all()
    assert clf.predict_clip(np.concatenate([red[:2], barely])) == "happy"
    preds = [clf.predict_clip(c) for c in (red, blue, red)]
    assert emotion_accuracy(preds, ["Happy", "neutral", "neutral"]) == pytest.approx(200 / 3)
    with pytest.raises(InputError, match="2 predictions for 1 labels"):
        emotion_accuracy(preds[:2], ["happy"])
    with pytest.raises(InputError, match=r"expected \(T, H, W, 3\) uint8"):
        clf.probabilities(red.astype(np.float32))


def test_files_that_do_not_fit_are_refused_with_the_reason(tmp_path):
    from plugtalk.metrics.emotion import EmotionClassifier

    with pytest.raises(InputError, match="does not exist"):
        EmotionClassifier(tmp_path / "none.onnx")
    path = planted_classifier(tmp_path / "emo.onnx")
    side = path.with_name(path.name + ".json")
    side.unlink()  # MEAD's eight emotions by default, but the graph has two outputs
    with pytest.raises(InputError, match=r"2 outputs, but 8 classes .* sidecar emo.onnx.json"):
        EmotionClassifier(path)
    for text, why in (("{", "not valid JSON"), ('{"classes": ["a", "a"]}', "distinct names"),
                      ('{"classes": ["a", "b"], "size": 64}', "input side 64"),
                      ('{"classes": ["a", "b"], "colour": 1}', "unknown keys"),
                      ('{"classes": ["a", "b"], "output": "scores"}', "'output' is")):
        side.write_text(text)
        with pytest.raises(InputError, match=why):
            EmotionClassifier(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="onnxruntime"):
        EmotionClassifier(tmp_path / "junk.onnx")
