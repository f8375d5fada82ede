"""Talking clips with sound, cut into short windows for EDTalk's audio stages (suppl. 1.3).

Every video frame ``t`` gets EDTalk's 80 x 16 log-mel window (:func:`plugtalk.io.audio.audio_mel_windows`)
and the frozen animator's bank coefficients of that frame (the Audio-to-Lip target is the mouth
bank, the Audio-to-Pose data the pose bank; EDTalk's own training reads them the same way from
precomputed per-frame features).  A window is ``length`` consecutive frames of one clip.

Held-out windows of *training identities* come from the end of every clip: the last
``holdout`` fraction of each clip's frames is kept apart, and no window crosses the cut.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .datasets import Clip, ClipStore, list_clips

__all__ = ["AudioClip", "AudioWindows", "WindowDataset", "clip_soundtrack", "load_audio_windows", "MAX_AUDIO_CLIPS"]

#: Most clips one audio-stage dataset reads (each is decoded and kept in memory).
MAX_AUDIO_CLIPS = 10_000


@dataclasses.dataclass
class AudioClip:
    """One clip with sound: ``mel (n, 1, 80, 16)`` in [-4, 4]; ``coefficients[bank] (n, k)``;
    ``frames (n, 3, S, S)`` uint8 RGB (kept only when an image loss needs them)."""

    name: str
    identity: str
    mel: Tensor
    coefficients: dict[str, Tensor]
    frames: Tensor | None = None

    @property
    def num_frames(self) -> int:
        return int(self.mel.shape[0])


def clip_soundtrack(clip: Clip, sample_rate: int) -> np.ndarray | None:
    """The clip's sound at ``sample_rate`` Hz, sample 0 at frame 0: the ``.wav`` of the same name next to
    it (as ``plugtalk prepare`` and the shared data write them), else the video's own audio stream;
    ``None`` when it has neither."""
    from ..io.audio import load_audio, resample

    wav = clip.path.with_suffix(".wav")
    if wav.is_file():
        return load_audio(wav, sample_rate)
    if clip.kind != "video":
        return None
    from ..animate import _video_soundtrack
    from ..io.video import probe_video

    track = _video_soundtrack(probe_video(clip.path))
    return None if track is None else resample(track[0], track[1], sample_rate)


def _read_frames(store: ClipStore, i: int, n: int) -> np.ndarray:
    """The first ``n`` frames of clip ``i``, resized to the store's size (one sequential decode)."""
    from ..io.video import read_frames

    clip = store.clips[i]
    if clip.kind != "video":
        return store.frames(i, range(n))
    return store._resize(read_frames(clip.path, max_frames=n))


@dataclasses.dataclass
class AudioWindows:
    """Windows of ``length`` frames over :class:`AudioClip` s (see the module docstring).

    Attributes:
        clips: the clips.  length: frames per window.  holdout: fraction of each clip held out.
    """

    clips: list[AudioClip]
    length: int
    holdout: float = 0.0

    def __post_init__(self) -> None:
        if self.length < 1:
            raise InputError(f"window length must be >= 1, got {self.length}")
        if not 0.0 <= self.holdout < 1.0:
            raise InputError(f"holdout must be in [0, 1), got {self.holdout}")

    def _cut(self, clip: AudioClip) -> int:
        return clip.num_frames - int(round(clip.num_frames * self.holdout))

    def train_mean(self, bank: str) -> Tensor:
        """Mean coefficients ``(k,)`` of ``bank`` over the training frames (the constant predictor)."""
        return torch.cat([c.coefficients[bank][:self._cut(c)] for c in self.clips]).mean(0)

    def starts(self, split: str = "train", stride: int = 1) -> list[tuple[int, int]]:
        """``(clip, first frame)`` of every window of ``split`` (``"train"`` or ``"heldout"``)."""
        if split not in ("train", "heldout"):
            raise InputError(f"split must be 'train' or 'heldout', got {split!r}")
        out = []
        for i, c in enumerate(self.clips):
            cut = self._cut(c)
            lo, hi = (0, cut) if split == "train" else (cut, c.num_frames)
            out.extend((i, s) for s in range(lo, hi - self.length + 1, max(1, stride)))
        return out

    def batch(self, starts: Sequence[tuple[int, int]], *, frames: bool = False) -> dict[str, Tensor]:
        """Stack windows: ``mel (B, L, 1, 80, 16)``, ``{bank} (B, L, k)``; with ``frames``
        ``frames (B, L, 3, S, S)`` in [-1, 1] and ``identity_frame (B, 3, S, S)`` (the clip's first frame)."""
        out: dict[str, list[Tensor]] = {"mel": []}
        for i, s in starts:
            c = self.clips[i]
            out["mel"].append(c.mel[s:s + self.length])
            for bank, v in c.coefficients.items():
                out.setdefault(bank, []).append(v[s:s + self.length])
            if frames:
                if c.frames is None:
                    raise InputError(f"clip {c.name!r} was loaded without frames")
                out.setdefault("frames", []).append(c.frames[s:s + self.length].float() / 127.5 - 1)
                out.setdefault("identity_frame", []).append(c.frames[0].float() / 127.5 - 1)
        return {k: torch.stack(v) for k, v in out.items()}


class WindowDataset(torch.utils.data.Dataset):
    """The windows of one split of :class:`AudioWindows` as a map-style dataset (what the trainer's
    sampler shards and resumes): item ``i`` is :meth:`AudioWindows.batch` of window ``i`` without the batch
    dimension (``mel (L, 1, 80, 16)``, ``{bank} (L, k)``; with ``frames`` also ``frames (L, 3, S, S)`` and
    ``identity_frame (3, S, S)`` in [-1, 1]).

    Raises:
        InputError: the split has no window.
    """

    def __init__(self, windows: AudioWindows, split: str = "train", frames: bool = False):
        self.windows, self.frames = windows, frames
        self.index = windows.starts(split)
        if not self.index:
            raise InputError(f"no {split} window of {windows.length} frames in {len(windows.clips)} clip(s)")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.windows.batch([self.index[i]], frames=self.frames).items()}


def load_audio_windows(folder: str | os.PathLike | Sequence[str | os.PathLike],
                       coefficients: Callable[[Tensor], Mapping[str, Tensor]], *, size: int, length: int,
                       holdout: float = 0.0, keep_frames: bool = False, max_clips: int = 200,
                       max_frames: int = 250, fps: float = 25.0, chunk: int = 32) -> AudioWindows:
    """Read every clip with sound under ``folder`` and label its frames with the frozen animator.

    Args:
        coefficients: frames ``(N, 3, size, size)`` in [-1, 1] -> ``{bank: (N, k)}`` (called under
            ``torch.no_grad`` in chunks of ``chunk`` frames).
        size: the animator's image size in px (frames are resized to it).
        length, holdout: as :class:`AudioWindows`.
        keep_frames: keep the frames (uint8) for image losses.
        max_clips, max_frames: read at most this many clips (sorted by path) and frames per clip.
        fps: the clips' frame rate (EDTalk: 25), which places the mel windows.

    Raises:
        InputError: a bound out of range, no clip with sound, or none with ``length`` frames.
    """
    from ..io.audio import EDTALK_MEL, audio_mel_windows

    if not 1 <= max_clips <= MAX_AUDIO_CLIPS or not 1 <= max_frames <= 100_000 or not 1 <= chunk <= 1024:
        raise InputError(f"max_clips must be in [1, {MAX_AUDIO_CLIPS}], max_frames in [1, 100000], chunk in [1, 1024]")
    if not 1.0 <= fps <= 120.0:
        raise InputError(f"fps must be in [1, 120], got {fps}")
    found = [c for c in list_clips(folder) if c.path.with_suffix(".wav").is_file() or c.kind == "video"]
    store = ClipStore(found, size=size, frame_access="seek")
    clips: list[AudioClip] = []
    for i, clip in enumerate(found):
        if len(clips) >= max_clips:
            break
        samples = clip_soundtrack(clip, EDTALK_MEL.sample_rate)
        n = min(clip.num_frames, max_frames)
        if samples is None or n < length:
            continue
        mel = torch.from_numpy(audio_mel_windows(samples, EDTALK_MEL.sample_rate, fps, num_frames=n))
        rgb = torch.from_numpy(_read_frames(store, i, n)).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            parts = [coefficients(rgb[s:s + chunk].float() / 127.5 - 1) for s in range(0, n, chunk)]
        coeffs = {k: torch.cat([p[k] for p in parts]).float().cpu() for k in parts[0]}
        clips.append(AudioClip(clip.name, clip.identity, mel, coeffs, rgb if keep_frames else None))
    if not clips:
        where = folder if isinstance(folder, (str, os.PathLike)) else ", ".join(map(str, folder))
        raise InputError(f"no clip with sound and at least {length} frames under {str(Path(where))!r}: the audio "
                         "stages need a .wav of the same name beside each clip, or a video with an audio track")
    return AudioWindows(clips, length, holdout)
