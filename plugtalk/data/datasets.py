"""Torch datasets over a folder of face clips: self-reenactment training pairs and deterministic
cross-reenactment evaluation pairs.

A *clip* is a video file (mp4, mov, ...) or a folder of frame images (png/jpg, sorted by name), as
written by ``plugtalk prepare`` or found in the shared data (``faces/train/<identity>__<clip>.mp4``).
Its *identity* is the file/folder name's prefix before ``"__"``, else the name of the folder it sits
in.

Frame access (measured on the shared 256 px, <= 10 s H.264 clips with a keyframe every 50 frames, one
CPU core, ``benchmarks/bench_data_io.py``): decoding a whole clip takes ~0.2-0.4 s (~1 ms/frame); a
random frame pair by seeking to the previous keyframe 16-40 ms (~50 training pairs/s); a pair from
clips decoded into memory ~1 ms including the tensor conversion (~850 pairs/s), at 196 KB per 256 px
frame (~0.9 GB for the 192 s shared train split).  So :class:`ClipStore` keeps whole clips in memory as
uint8 when the folder fits in ``cache_bytes`` (``frame_access="auto"``), and otherwise seeks
(:func:`plugtalk.io.video.read_frames_at`).  Call :meth:`ClipStore.preload` in the main process
before creating a DataLoader: forked workers then share the decoded frames instead of decoding
every clip once per worker.

Sampling is seeded by ``(seed, epoch, index)`` only, so a sample does not depend on which worker
draws it, nor on the number of workers: runs are reproducible.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import InputError
from ..io.images import load_image, to_tensor
from ..io.paths import VIDEO_SUFFIXES

__all__ = ["Clip", "list_clips", "identity_of", "clip_labels", "ClipStore", "SelfReenactmentDataset", "CrossPair",
           "CrossReenactmentDataset", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_FRAME_BYTES_GUESS = 3  # bytes per pixel of a decoded uint8 RGB frame


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip: ``kind`` is ``"video"`` (a file) or ``"frames"`` (a folder of images)."""

    path: Path
    identity: str
    name: str
    kind: str
    num_frames: int
    height: int
    width: int
    frame_files: tuple[Path, ...] = ()

    @property
    def nbytes(self) -> int:
        """Memory of the clip decoded as uint8 RGB at its own size."""
        return self.num_frames * self.height * self.width * _FRAME_BYTES_GUESS


def identity_of(path: str | os.PathLike) -> str:
    """Identity of a clip: name prefix before ``"__"``, else the parent folder's name."""
    p = Path(path)
    stem = p.stem if p.suffix.lower() in VIDEO_SUFFIXES else p.name
    return stem.split("__", 1)[0] if "__" in stem else p.resolve().parent.name


def clip_labels(clips) -> dict[Path, "ClipRecord"]:
    """The ``manifest.jsonl`` line (:class:`~plugtalk.data.manifest.ClipRecord`: identity, split, labels such as
    MEAD's ``emotion`` / ``intensity``, frames, fps, audio wav, crop box) of each clip, read from the manifest
    of the folder the clip lies in (written by ``plugtalk prepare``).

    Args:
        clips: a folder, a list of folders / clip paths, or :class:`Clip` objects.

    Returns:
        ``{clip path: record}``; clips their folder's manifest does not list are left out.  The audio file is
        ``record.audio_path(clip_path.parent)`` (16 kHz mono wav), ``None`` when the clip has no sound.

    Raises:
        InputError: as :func:`list_clips`, or a manifest line that is not a clip record.
    """
    from .manifest import read_manifest

    items = _as_clips(clips)
    manifests: dict[Path, dict] = {}
    out = {}
    for c in items:
        folder = c.path.parent
        if folder not in manifests:
            manifests[folder] = read_manifest(folder)
        rec = manifests[folder].get(c.path.name)
        if rec is not None:
            out[c.path] = rec
    return out


def _video():
    """:mod:`plugtalk.io.video`, imported when a video is read (frame folders need no PyAV)."""
    from ..io import video

    return video


def _video_clip(p: Path) -> Clip:
    info = _video().probe_video(p)
    n = info.frame_count
    if n is None:  # container does not say: count by decoding once
        n = len(_video().read_frames(p))
    return Clip(p, identity_of(p), p.stem, "video", n, info.height, info.width)


def _frames_clip(p: Path, files: list[Path]) -> Clip:
    first = load_image(files[0], min_side=1)
    return Clip(p, identity_of(p), p.name, "frames", len(files), first.shape[0], first.shape[1], tuple(files))


def list_clips(root: str | os.PathLike | Sequence[str | os.PathLike], *, min_frames: int = 2) -> list[Clip]:
    """Find the clips under ``root`` (recursively): video files and folders holding frame images.

    Args:
        root: a folder, or a list of folders / clip paths.
        min_frames: clips with fewer frames are left out.

    Returns:
        Clips sorted by path.

    Raises:
        InputError: a path does not exist, a video is unreadable, or no clip was found.
    """
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    clips: list[Clip] = []
    for r in roots:
        r = Path(r)
        if not r.exists():
            raise InputError(f"clip folder {str(r)!r} does not exist")
        if r.is_file():
            clips.append(_video_clip(r))
            continue
        for dirpath, dirnames, filenames in os.walk(r):
            dirnames.sort()
            d = Path(dirpath)
            images = sorted(d / f for f in filenames if Path(f).suffix.lower() in IMAGE_SUFFIXES)
            if images:
                clips.append(_frames_clip(d, images))
            for f in sorted(filenames):
                if Path(f).suffix.lower() in VIDEO_SUFFIXES and not f.startswith("."):
                    clips.append(_video_clip(d / f))
    clips = sorted((c for c in clips if c.num_frames >= min_frames), key=lambda c: str(c.path))
    if not clips:
        raise InputError(f"no clips (videos or folders of frames with >= {min_frames} frames) under "
                         + ", ".join(str(Path(r)) for r in roots))
    return clips


def _as_clips(root) -> list[Clip]:
    if isinstance(root, (list, tuple)) and root and all(isinstance(c, Clip) for c in root):
        return list(root)
    return list_clips(root)


class ClipStore:
    """Random access to the frames of a list of clips.

    Args:
        clips: from :func:`list_clips`.
        size: resize frames to ``size x size`` (Lanczos) when they differ; ``None`` keeps them.
        frame_access: ``"cache"`` (decode each clip once, keep it as uint8 in memory, least recently
            used clips evicted beyond ``cache_bytes``), ``"seek"`` (decode only the asked frames), or
            ``"auto"`` (cache when all clips fit in ``cache_bytes``, else seek).
        cache_bytes: memory budget of the cache per process.
    """

    def __init__(self, clips: Sequence[Clip], *, size: int | None = None, frame_access: str = "auto",
                 cache_bytes: int = 2 << 30):
        if frame_access not in ("auto", "cache", "seek"):
            raise InputError(f"frame_access must be 'auto', 'cache' or 'seek', got {frame_access!r}")
        self.clips = list(clips)
        self.size = size
        self.cache_bytes = int(cache_bytes)
        total = sum(self.stored_bytes(c) for c in self.clips)
        self.frame_access = frame_access if frame_access != "auto" else ("cache" if total <= cache_bytes else "seek")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._infos: dict[int, object] = {}  # VideoInfo: probe results, so seeking does not re-probe

    def __len__(self) -> int:
        return len(self.clips)

    def stored_bytes(self, clip: Clip) -> int:
        """Memory the cache needs for ``clip``: its frames are kept at ``size`` (resized once, when decoded)."""
        if self.size is None:
            return clip.nbytes
        return clip.num_frames * self.size * self.size * _FRAME_BYTES_GUESS

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        if self.size is None or frames.shape[1:3] == (self.size, self.size):
            return frames
        return np.stack([np.asarray(Image.fromarray(f).resize((self.size, self.size), Image.Resampling.LANCZOS))
                         for f in frames])

    def _decode_all(self, clip: Clip) -> np.ndarray:
        if clip.kind == "video":
            return _video().read_frames(clip.path)
        return np.stack([load_image(f, min_side=1) for f in clip.frame_files])

    def _cached(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        frames = self._resize(self._decode_all(self.clips[i]))
        self._cache[i] = frames
        self._cached_bytes += frames.nbytes
        while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= old.nbytes
        return frames

    def preload(self) -> "ClipStore":
        """Decode every clip into the cache now (cache mode only; a no-op when seeking)."""
        if self.frame_access == "cache":
            for i in range(len(self.clips)):
                self._cached(i)
        return self

    def frames(self, clip: int, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` of clip number ``clip`` as ``(k, H, W, 3)`` uint8 RGB (resized to ``size``).

        Raises:
            InputError: an index outside the clip, or an unreadable clip.
        """
        c = self.clips[clip]
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= c.num_frames):
            raise InputError(f"frame index out of range 0..{c.num_frames - 1} for clip {c.name!r}: {idx.tolist()}")
        if self.frame_access == "cache":
            all_frames = self._cached(clip)
            if idx.size and idx.max() >= len(all_frames):  # declared count larger than decodable
                raise InputError(f"clip {c.name!r} decodes to {len(all_frames)} frames, not {c.num_frames}")
            out = all_frames[idx]
        elif c.kind == "video":
            if clip not in self._infos:
                self._infos[clip] = _video().probe_video(c.path)
            out = _video().read_frames_at(c.path, idx, info=self._infos[clip])
        else:
            out = np.stack([load_image(c.frame_files[i], min_side=1) for i in idx])
        return self._resize(out)


class SelfReenactmentDataset(Dataset):
    """Training pairs for self-reenactment: two random frames of one clip as source and driving.

    Item ``i`` uses clip ``i % num_clips`` (every clip equally often per epoch) and two distinct
    frames drawn with a generator seeded by ``(seed, epoch, i)``.

    Args:
        root: clip folder(s) or a list of :class:`Clip`.
        repeats: items per clip per epoch (``len = repeats * num_clips``).
        seed: base seed.
        hflip: mirror source and driving together with probability 1/2 (a mirrored video is still a
            valid video of the same person).
        size, frame_access, cache_bytes: see :class:`ClipStore`.

    Item:
        dict with ``source``, ``driving``: ``(3, H, W)`` float32 in [-1, 1]; ``identity``, ``clip``: str;
        ``source_index``, ``driving_index``: frame numbers in the clip.

    For different pairs each epoch call :meth:`set_epoch` before iterating (DataLoader workers copy
    the dataset at the start of each epoch unless ``persistent_workers=True``).
    """

    def __init__(self, root, *, repeats: int = 1, seed: int = 0, hflip: bool = False, size: int | None = None,
                 frame_access: str = "auto", cache_bytes: int = 2 << 30):
        clips = _as_clips(root)
        if repeats < 1:
            raise InputError(f"repeats must be >= 1, got {repeats}")
        self.store = ClipStore(clips, size=size, frame_access=frame_access, cache_bytes=cache_bytes)
        self.repeats, self.seed, self.hflip = repeats, int(seed), hflip
        self.epoch = 0

    @property
    def clips(self) -> list[Clip]:
        return self.store.clips

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def preload(self) -> "SelfReenactmentDataset":
        self.store.preload()
        return self

    def __len__(self) -> int:
        return self.repeats * len(self.store)

    def pair_indices(self, index: int) -> tuple[int, int, int, bool]:
        """``(clip, source_frame, driving_frame, flipped)`` of item ``index`` (no decoding)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        clip = index % len(self.store)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = self.store.clips[clip].num_frames
        s, d = rng.choice(n, size=2, replace=False)
        flip = bool(self.hflip and rng.random() < 0.5)
        return clip, int(s), int(d), flip

    def __getitem__(self, index: int) -> dict:
        clip, s, d, flip = self.pair_indices(index)
        frames = self.store.frames(clip, [s, d])
        if flip:
            frames = frames[:, :, ::-1]
        t = to_tensor(np.ascontiguousarray(frames))
        c = self.store.clips[clip]
        return {"source": t[0], "driving": t[1], "identity": c.identity, "clip": c.name,
                "source_index": s, "driving_index": d}


@dataclasses.dataclass(frozen=True)
class CrossPair:
    """A cross-reenactment case: source frame of one identity, driving frames of another."""

    source_clip: int
    source_frame: int
    driving_clip: int
    driving_frames: tuple[int, ...]


class CrossReenactmentDataset(Dataset):
    """Deterministic cross-identity pairs for evaluation.

    For every driving clip, ``pairs_per_driver`` source clips are taken from *other* identities
    (distinct identities while there are enough, chosen by a generator seeded with ``seed``); the
    source image is frame ``source_frame`` of the source clip (the first frame by default, the usual
    protocol), the driving frames are the whole driving clip or ``driving_frames`` evenly spaced ones.

    Args:
        root: clip folder(s) or a list of :class:`Clip`.
        pairs_per_driver: source clips per driving clip.
        driving_frames: ``None`` for every frame, else this many evenly spaced frames.
        source_frame: frame number of the source image (clamped to the clip).
        seed: seed of the pairing.
        size, frame_access, cache_bytes: see :class:`ClipStore`.

    Item:
        dict with ``source``: ``(3, H, W)``, ``driving``: ``(T, 3, H, W)``, both float32 in [-1, 1];
        ``source_identity``, ``driving_identity``, ``source_clip``, ``driving_clip``: str;
        ``driving_indices``: ``(T,)`` int64.  With ``driving_frames=None`` clips differ in length: use
        ``batch_size=1`` (or a collate that pads).

    Raises:
        InputError: fewer than two identities.
    """

    def __init__(self, root, *, pairs_per_driver: int = 1, driving_frames: int | None = None, source_frame: int = 0,
                 seed: int = 0, size: int | None = None, frame_access: str = "auto", cache_bytes: int = 2 << 30):
        clips = _as_clips(root)
        self.store = ClipStore(clips, size=size, frame_access=frame_access, cache_bytes=cache_bytes)
        ids = sorted({c.identity for c in clips})
        if len(ids) < 2:
            raise InputError(f"cross-reenactment needs clips of at least two identities, found {ids}")
        if pairs_per_driver < 1 or (driving_frames is not None and driving_frames < 1):
            raise InputError("pairs_per_driver and driving_frames must be >= 1")
        rng = np.random.default_rng(seed)
        by_id = {i: [k for k, c in enumerate(clips) if c.identity == i] for i in ids}
        pairs = []
        for d, dc in enumerate(clips):
            others = [i for i in ids if i != dc.identity]
            order = list(rng.permutation(len(others)))
            chosen = [others[order[j % len(others)]] for j in range(pairs_per_driver)]
            n = dc.num_frames
            frames = tuple(range(n)) if driving_frames is None else tuple(
                int(round(x)) for x in np.linspace(0, n - 1, min(driving_frames, n)))
            for ident in chosen:
                s = int(by_id[ident][rng.integers(len(by_id[ident]))])
                sf = min(max(source_frame, 0), clips[s].num_frames - 1)
                pairs.append(CrossPair(s, sf, d, frames))
        self.pairs = pairs

    @property
    def clips(self) -> list[Clip]:
        return self.store.clips

    def preload(self) -> "CrossReenactmentDataset":
        self.store.preload()
        return self

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        p = self.pairs[index]
        src = self.store.frames(p.source_clip, [p.source_frame])
        drv = self.store.frames(p.driving_clip, p.driving_frames)
        sc, dc = self.store.clips[p.source_clip], self.store.clips[p.driving_clip]
        return {"source": to_tensor(src)[0], "driving": to_tensor(drv), "source_identity": sc.identity,
                "driving_identity": dc.identity, "source_clip": sc.name, "driving_clip": dc.name,
                "driving_indices": torch.tensor(p.driving_frames, dtype=torch.int64)}
