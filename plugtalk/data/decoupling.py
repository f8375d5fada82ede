"""Training data of EDTalk's decoupling stages (EDTalk suppl. Sec. 1.3, Sec. 3.3).

* :class:`MouthSwapDataset` - for the mouth-pose decouple stage: frames of two clips A and B (of
  different identities where the folder has several), an identity (source) frame and a driving frame of
  each, and the two *mouth-replaced* driving frames: A's frame with B's mouth region pasted in
  (``I_PA^mB``: A's pose, B's mouth) and the reverse.  The mouth region is a box given as fractions of the
  aligned crop (:data:`DEFAULT_MOUTH_BOX`; measured on the shared train clips, see the README).
* :class:`EmotionPairsDataset` - for the expression stage: self-reenactment pairs of the clips that carry
  an emotion label (:func:`plugtalk.data.labels.clip_labels`), the source taken from a clip of the same
  identity labelled ``neutral`` when there is one (so the expression must come from the driving frame).

Sampling is seeded by ``(seed, epoch, index)`` as in :class:`~plugtalk.data.SelfReenactmentDataset`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..io.images import to_tensor

__all__ = ["MouthSwapDataset", "EmotionPairsDataset", "DEFAULT_MOUTH_BOX", "mouth_mask", "NEUTRAL"]

#: (top, bottom, left, right) of the mouth region as fractions of an aligned face crop: the union of the
#: mouth landmarks 48-67 over the shared train clips' first and middle frames ([0.57, 0.85] x [0.20, 0.69]),
#: widened a little.
DEFAULT_MOUTH_BOX = (0.55, 0.88, 0.2, 0.8)
NEUTRAL = "neutral"


def _check_box(box: Sequence[float]) -> tuple[float, float, float, float]:
    if len(box) != 4:
        raise InputError(f"mouth box must be (top, bottom, left, right) fractions, got {list(box)}")
    t, b, l, r = (float(v) for v in box)
    if not (0 <= t < b <= 1 and 0 <= l < r <= 1):
        raise InputError(f"mouth box needs 0 <= top < bottom <= 1 and 0 <= left < right <= 1, got {list(box)}")
    return t, b, l, r


def mouth_mask(size: int, box: Sequence[float] = DEFAULT_MOUTH_BOX) -> torch.Tensor:
    """``(1, size, size)`` float mask, 1 inside the mouth ``box`` (fractions), 0 elsewhere.

    Raises:
        InputError: a box outside [0, 1] or empty.
    """
    t, b, l, r = _check_box(box)
    m = torch.zeros(1, size, size)
    m[:, int(round(t * size)):max(int(round(b * size)), int(round(t * size)) + 1),
      int(round(l * size)):max(int(round(r * size)), int(round(l * size)) + 1)] = 1
    return m


class MouthSwapDataset(Dataset):
    """Clip pairs with mouth replacement for EDTalk's mouth-pose decoupling.

    Item ``i``: clip A is clip ``i % num_clips``; clip B is drawn among the clips of other identities (other
    clips when there is one identity, A itself when there is one clip).

    Args:
        root: clip folder(s) or a list of :class:`~plugtalk.data.Clip`.
        repeats: items per clip per epoch.  seed: base seed.  hflip: mirror all frames of an item together
            with probability 1/2.  size: frame size (see :class:`~plugtalk.data.ClipStore`).
        mouth_box: (top, bottom, left, right) fractions of the crop.
        sync_window: with ``k > 0`` (EDTalk's L_sync^m: 5) also ``k`` consecutive frames of A and the mel
            window of their middle frame (every clip needs sound: a ``.wav`` beside it or an audio track).
        fps: the clips' frame rate, which places the mel windows.

    Item (images ``(3, S, S)`` float32 in [-1, 1]):
        ``source`` / ``source_b``: identity frames of A / B; ``driving`` / ``driving_b``: driving frames of
        A / B; ``a_mouth_b``: A's driving frame with B's mouth region; ``b_mouth_a``: the reverse;
        ``mouth_mask``: ``(1, S, S)`` in {0, 1}; ``identity``, ``identity_b``: str; with ``sync_window``
        ``sync_frames (k, 3, S, S)`` and ``sync_mel (1, 80, 16)`` (EDTalk's log-mel features).

    Raises:
        InputError: no clips, ``repeats < 1``, a bad mouth box, or (``sync_window``) a clip without sound or
            with fewer frames.
    """

    def __init__(self, root, *, repeats: int = 1, seed: int = 0, hflip: bool = False, size: int | None = None,
                 mouth_box: Sequence[float] = DEFAULT_MOUTH_BOX, frame_access: str = "auto",
                 cache_bytes: int = 2 << 30, sync_window: int = 0, fps: float = 25.0):
        if repeats < 1:
            raise InputError(f"repeats must be >= 1, got {repeats}")
        from .datasets import ClipStore, _as_clips  # video decoding ([video] extra) only when data is read

        self.store = ClipStore(_as_clips(root), size=size, frame_access=frame_access, cache_bytes=cache_bytes)
        self.repeats, self.seed, self.hflip, self.epoch = repeats, int(seed), hflip, 0
        self.mouth_box = _check_box(mouth_box)
        ids = [c.identity for c in self.store.clips]
        n = len(ids)
        self.partners = [[j for j in range(n) if ids[j] != ids[i]] or [j for j in range(n) if j != i] or [i]
                         for i in range(n)]
        self.sync_window = int(sync_window)
        if not 0 <= self.sync_window <= 64:
            raise InputError(f"sync_window must be in [0, 64] frames, got {sync_window}")
        self.mel = [self._clip_mel(c, fps) for c in self.store.clips] if self.sync_window > 0 else []

    def _clip_mel(self, clip, fps: float) -> np.ndarray:
        """``(frames, 1, 80, 16)`` mel windows of ``clip`` (its soundtrack placed at frame 0)."""
        from ..io.audio import EDTALK_MEL, audio_mel_windows
        from .audio_windows import clip_soundtrack

        if clip.num_frames < self.sync_window:
            raise InputError(f"clip {clip.name!r} has {clip.num_frames} frames, fewer than the {self.sync_window} "
                             "SyncNet sees")
        samples = clip_soundtrack(clip, EDTALK_MEL.sample_rate)
        if samples is None:
            raise InputError(f"clip {clip.name!r} has no sound (no {clip.path.with_suffix('.wav').name} beside it, no "
                             "audio track): L_sync^m reads every clip's audio")
        return audio_mel_windows(samples, EDTALK_MEL.sample_rate, fps, num_frames=clip.num_frames)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def preload(self) -> "MouthSwapDataset":
        self.store.preload()
        return self

    def __len__(self) -> int:
        return self.repeats * len(self.store)

    def _two(self, rng, clip: int) -> list[int]:
        n = self.store.clips[clip].num_frames
        return [int(v) for v in rng.choice(n, size=2, replace=False)]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        a = index % len(self.store)
        b = int(self.partners[a][rng.integers(len(self.partners[a]))])
        fa, fb = self.store.frames(a, self._two(rng, a)), self.store.frames(b, self._two(rng, b))
        if fa.shape[1:] != fb.shape[1:]:
            raise InputError(f"clips {self.store.clips[a].name!r} and {self.store.clips[b].name!r} differ in frame "
                             "size: set data.size")
        sync = {}
        if self.sync_window:
            k = self.sync_window
            first = int(rng.integers(self.store.clips[a].num_frames - k + 1))
            window = self.store.frames(a, range(first, first + k))
            sync = {"sync_mel": torch.from_numpy(np.ascontiguousarray(self.mel[a][first + k // 2]))}
        if self.hflip and rng.random() < 0.5:
            fa, fb = fa[:, :, ::-1], fb[:, :, ::-1]
            if sync:
                window = window[:, :, ::-1]
        if sync:
            sync["sync_frames"] = to_tensor(np.ascontiguousarray(window))
        ta, tb = to_tensor(np.ascontiguousarray(fa)), to_tensor(np.ascontiguousarray(fb))
        mask = mouth_mask(ta.shape[-1], self.mouth_box) if ta.shape[-1] == ta.shape[-2] else None
        if mask is None:
            raise InputError("MouthSwapDataset needs square frames: set data.size")
        a_mouth_b = ta[1] * (1 - mask) + tb[1] * mask
        b_mouth_a = tb[1] * (1 - mask) + ta[1] * mask
        return {"source": ta[0], "driving": ta[1], "source_b": tb[0], "driving_b": tb[1], "a_mouth_b": a_mouth_b,
                "b_mouth_a": b_mouth_a, "mouth_mask": mask, "identity": self.store.clips[a].identity,
                "identity_b": self.store.clips[b].identity, **sync}


class EmotionPairsDataset(Dataset):
    """Self-reenactment pairs of emotion-labelled clips for EDTalk's expression stage.

    Args:
        root: clip folder(s) or a list of clips.
        labels: ``{clip name: {"emotion": str, ...}}`` (:func:`plugtalk.data.labels.clip_labels`); clips
            without an ``emotion`` label are left out.
        repeats, seed, hflip, size: as :class:`~plugtalk.data.SelfReenactmentDataset`.

    Item: ``source`` (a frame of a ``neutral`` clip of the same identity when there is one, else another
    frame of the same clip), ``driving``: ``(3, S, S)`` in [-1, 1]; ``emotion``: index into
    :attr:`emotions` (sorted names); ``identity``, ``clip``: str.

    Raises:
        InputError: no clip carries an emotion label.
    """

    def __init__(self, root, labels: dict[str, dict], *, repeats: int = 1, seed: int = 0, hflip: bool = False,
                 size: int | None = None, frame_access: str = "auto", cache_bytes: int = 2 << 30):
        if repeats < 1:
            raise InputError(f"repeats must be >= 1, got {repeats}")
        from .datasets import ClipStore, _as_clips

        clips = [c for c in _as_clips(root) if isinstance(labels.get(c.name, {}).get("emotion"), str)]
        if not clips:
            raise InputError("no clip has an 'emotion' label: the expression stage trains on emotion-labelled clips "
                             "(give <data.folder>/manifest.jsonl or labels.json, see plugtalk.data.labels)")
        self.store = ClipStore(clips, size=size, frame_access=frame_access, cache_bytes=cache_bytes)
        self.emotion_of = [str(labels[c.name]["emotion"]).lower() for c in clips]
        self.emotions = sorted(set(self.emotion_of))
        self.repeats, self.seed, self.hflip, self.epoch = repeats, int(seed), hflip, 0
        self.neutral_of = [[j for j, d in enumerate(clips) if d.identity == c.identity and self.emotion_of[j] == NEUTRAL
                            and j != i] for i, c in enumerate(clips)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def preload(self) -> "EmotionPairsDataset":
        self.store.preload()
        return self

    def __len__(self) -> int:
        return self.repeats * len(self.store)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        clip = index % len(self.store)
        n = self.store.clips[clip].num_frames
        s, d = (int(v) for v in rng.choice(n, size=2, replace=False))
        neutral = self.neutral_of[clip]
        if neutral:
            other = int(neutral[rng.integers(len(neutral))])
            src = self.store.frames(other, [int(rng.integers(self.store.clips[other].num_frames))])
            frames = np.concatenate([src, self.store.frames(clip, [d])])
        else:
            frames = self.store.frames(clip, [s, d])
        if self.hflip and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
        t = to_tensor(np.ascontiguousarray(frames))
        c = self.store.clips[clip]
        return {"source": t[0], "driving": t[1], "emotion": self.emotions.index(self.emotion_of[clip]),
                "identity": c.identity, "clip": c.name}
