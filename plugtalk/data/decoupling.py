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

    Item (images ``(3, S, S)`` float32 in [-1, 1]):
        ``source`` / ``source_b``: identity frames of A / B; ``driving`` / ``driving_b``: driving frames of
        A / B; ``a_mouth_b``: A's driving frame with B's mouth region; ``b_mouth_a``: the reverse;
        ``mouth_mask``: ``(1, S, S)`` in {0, 1}; ``identity``, ``identity_b``: str.

    Raises:
        InputError: no clips, ``repeats < 1``, or a bad mouth box.
    """

    def __init__(self, root, *, repeats: int = 1, seed: int = 0, hflip: bool = False, size: int | None = None,
                 mouth_box: Sequence[float] = DEFAULT_MOUTH_BOX, frame_access: str = "auto",
                 cache_bytes: int = 2 << 30):
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
        if self.hflip and rng.random() < 0.5:
            fa, fb = fa[:, :, ::-1], fb[:, :, ::-1]
        ta, tb = to_tensor(np.ascontiguousarray(fa)), to_tensor(np.ascontiguousarray(fb))
        mask = mouth_mask(ta.shape[-1], self.mouth_box) if ta.shape[-1] == ta.shape[-2] else None
        if mask is None:
            raise InputError("MouthSwapDataset needs square frames: set data.size")
        a_mouth_b = ta[1] * (1 - mask) + tb[1] * mask
        b_mouth_a = tb[1] * (1 - mask) + ta[1] * mask
        return {"source": ta[0], "driving": ta[1], "source_b": tb[0], "driving_b": tb[1], "a_mouth_b": a_mouth_b,
                "b_mouth_a": b_mouth_a, "mouth_mask": mask, "identity": self.store.clips[a].identity,
                "identity_b": self.store.clips[b].identity}


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
