"""Lip-sync confidence / distance / offset (plugtalk.metrics.sync) on a planted audio-video link."""

import numpy as np
import pytest
import torch

from plugtalk.errors import InputError
from plugtalk.metrics.sync import sync_confidence


class BrightnessSync:
    """A stand-in SyncNet whose face embedding is the middle frame's lower-face brightness and whose audio
    embedding is the mel window's mean, both as a point on a circle: in sync exactly where they match."""

    def face_embedding(self, faces):           # (B, 15, 48, 96): 5 frames x RGB, frame-major
        level = faces[:, 6:9].mean(dim=(1, 2, 3))          # the middle frame, in [-1, 1]
        return torch.stack([torch.cos(2 * level), torch.sin(2 * level)], 1)

    def audio_embedding(self, mel):
        level = mel.mean(dim=(1, 2, 3))
        return torch.stack([torch.cos(2 * level), torch.sin(2 * level)], 1)


def planted(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    level = rng.uniform(-0.9, 0.9, n)
    frames = np.broadcast_to(((level + 1) * 127.5).round().astype(np.uint8)[:, None, None, None], (n, 32, 32, 3))
    mel = np.broadcast_to(level[:, None, None, None].astype(np.float32), (n, 1, 80, 16))
    return frames.copy(), mel.copy()


def test_in_sync_audio_gives_offset_zero_and_a_shift_is_found():
    frames, mel = planted()
    r = sync_confidence(BrightnessSync(), frames, mel, face_box=(0, 0, 1, 1))
    assert r["offset"] == 0 and r["distance"] < 0.02 and r["confidence"] > 0.3 and r["windows"] == 36
    late = np.concatenate([mel[:1].repeat(3, 0), mel[:-3]])  # the audio runs 3 frames behind the video
    shifted = sync_confidence(BrightnessSync(), frames, late, face_box=(0, 0, 1, 1))
    assert shifted["offset"] == 3 and shifted["distance"] < 0.02
    unrelated = sync_confidence(BrightnessSync(), frames, planted(seed=1)[1], face_box=(0, 0, 1, 1))
    assert unrelated["confidence"] < r["confidence"] and unrelated["distance"] > 0.2


def test_bad_input_is_refused():
    frames, mel = planted(4)
    with pytest.raises(InputError, match="at least 5 frames"):
        sync_confidence(BrightnessSync(), frames, mel)
    with pytest.raises(InputError, match="max_offset"):
        sync_confidence(BrightnessSync(), *planted(), max_offset=99)
    with pytest.raises(InputError, match="needs frames"):
        sync_confidence(BrightnessSync(), planted()[0][..., 0], planted()[1])
