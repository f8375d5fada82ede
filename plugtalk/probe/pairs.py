"""Source/driving pairs for the probe, from real clips.

* Self-reenactment pairs: two frames far apart in one clip (the first and the last quarter).
* Cross-reenactment pairs: a frame of one identity drives a frame of another.

Clips are named ``<identity>__<clip>.<ext>`` (the shared data's convention, see its MANIFEST); a file
without ``__`` is its own identity.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from .spec import PairSpec

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "LoadedPairs",
    "find_videos",
    "frame_count",
    "identity_of",
    "load_pair_frames",
    "pairs_from_files",
    "pairs_from_folder",
    "usable_pairs_from_folder",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def identity_of(path: str | os.PathLike) -> str:
    """``"obama__obama_00.mp4"`` -> ``"obama"``; a name without ``__`` is its own identity."""
    return Path(path).stem.split("__")[0]


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Video files under ``root`` (recursively), sorted.

    Raises:
        InputError: ``root`` is not a folder or holds no video.
    """
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"pairs folder {str(r)!r} does not exist or is not a folder")
    out = sorted(p for p in r.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not out:
        raise InputError(f"no videos ({', '.join(VIDEO_SUFFIXES)}) in {str(r)!r}")
    return out


def frame_count(path: str | os.PathLike) -> int:
    """Number of frames of a video (container header, else by decoding).

    Raises:
        InputError: the file cannot be read as a video.
    """
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError(f"{Path(path).name!r} has no video stream")
            s = c.streams.video[0]
            return int(s.frames) if s.frames else sum(1 for _ in c.decode(s))
    except InputError:
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"video {Path(path).name!r} cannot be read ({e})") from None


def _far_apart(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """Two frame indices from the first and the last quarter of an ``n``-frame clip."""
    q = max(1, n // 4)
    a = int(rng.integers(0, q))
    b = int(rng.integers(max(a + 1, n - q), n)) if n > 1 else 0
    return a, b


def pairs_from_folder(root: str | os.PathLike | Sequence[str | os.PathLike], num_pairs: int,
                      seed: int = 0) -> tuple[list[PairSpec], list[str]]:
    """``ceil(num_pairs / 2)`` self- and ``floor(num_pairs / 2)`` cross-reenactment pairs.

    Self pairs go through the identities in a seeded order (one clip each, frames from its first and
    last quarter); cross pairs through ordered pairs of different identities.  Deterministic for a
    given ``seed`` and folder content.

    Args:
        root: a folder (or several) of ``<identity>__<clip>`` videos, searched recursively.

    Returns:
        The pairs, and notes for the user (unreadable clips left out, no cross pairs possible).

    Raises:
        InputError: ``num_pairs < 1``, no folder/videos, or no readable clip.
    """
    if num_pairs < 1:
        raise InputError(f"num_pairs must be >= 1, got {num_pairs}")
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    videos = sorted({v for r in roots for v in find_videos(r)})
    notes: list[str] = []
    clips: dict[str, list[tuple[Path, int]]] = {}
    for v in videos:
        try:
            n = frame_count(v)
        except InputError as e:
            notes.append(f"left out {v}: {e}")
            continue
        if n >= 1:
            clips.setdefault(identity_of(v), []).append((v, n))
    if not clips:
        raise InputError(f"no readable video in {', '.join(str(r) for r in roots)}")
    rng = np.random.default_rng(seed)
    ids = sorted(clips)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_self = math.ceil(num_pairs / 2)
    n_cross = num_pairs - n_self
    if n_cross and len(ids) < 2:
        notes.append(f"only one identity ({ids[0]}): no cross-reenactment pairs; {n_cross} more self pairs instead")
        n_self, n_cross = num_pairs, 0
    pairs = []
    for i in range(n_self):
        ident = order[i % len(order)]
        path, n = clips[ident][int(rng.integers(len(clips[ident])))]
        a, b = _far_apart(rng, n)
        pairs.append(PairSpec(str(path), str(path), a, b, "self"))
    combos = [(a, b) for a, b in itertools.permutations(order, 2)]
    combos = [combos[i] for i in rng.permutation(len(combos))] if combos else []
    for i in range(n_cross):
        a, b = combos[i % len(combos)]
        (sp, sn), (dp, dn) = (clips[a][int(rng.integers(len(clips[a])))], clips[b][int(rng.integers(len(clips[b])))])
        pairs.append(PairSpec(str(sp), str(dp), int(rng.integers(sn)), int(rng.integers(dn)), "cross"))
    return pairs, notes


def detect_face(image: np.ndarray, name: str) -> bool:
    """Whether dlib's detector finds a face (:func:`plugtalk.face.find_largest_face`)."""
    from ..errors import NoFaceError
    from ..face import find_largest_face

    try:
        find_largest_face(image, name=name)
        return True
    except NoFaceError:
        return False


def usable_pairs_from_folder(root: str | os.PathLike | Sequence[str | os.PathLike], num_pairs: int, seed: int = 0,
                             has_face: Callable[[np.ndarray, str], bool] = detect_face, size: int = 256,
                             ) -> tuple[list[PairSpec], list[str]]:
    """Like :func:`pairs_from_folder`, but only pairs whose two frames pass ``has_face`` (default: dlib
    finds a face): candidates are drawn (four times as many as needed, in the same seeded order) and the
    first usable ``ceil(n / 2)`` self and ``floor(n / 2)`` cross pairs are kept, so a run gets
    ``num_pairs`` pairs it can score.  Frames are checked at ``size`` px (the animator's).

    Returns:
        The pairs (fewer when the folder has too few usable frames) and notes naming what was passed over.
    """
    candidates, notes = pairs_from_folder(root, 4 * num_pairs + 4, seed)
    want = {"self": math.ceil(num_pairs / 2), "cross": num_pairs // 2}
    if not any(p.kind == "cross" for p in candidates):
        want = {"self": num_pairs, "cross": 0}
    loaded = load_pair_frames(candidates, size)
    ok = dict(zip(loaded.indices, zip(loaded.sources, loaded.drivings)))
    kept: list[PairSpec] = []
    for k, p in enumerate(candidates):
        if sum(q.kind == p.kind for q in kept) >= want[p.kind]:
            continue
        if k not in ok:
            notes.append(f"passed over {p.labels[0]} / {p.labels[1]}: {loaded.problems[k]}")
            continue
        faceless = [label for img, label in zip(ok[k], p.labels) if not has_face(img, label)]
        if faceless:
            notes.append(f"passed over {p.labels[0]} / {p.labels[1]}: no face found in {', '.join(faceless)}")
            continue
        kept.append(p)
    kept.sort(key=lambda p: p.kind != "self")
    if len(kept) < num_pairs:
        notes.append(f"only {len(kept)} usable pairs found (asked for {num_pairs})")
    return kept, notes


def pairs_from_files(source: str | os.PathLike, driving: str | os.PathLike, num_pairs: int = 1) -> list[PairSpec]:
    """Pairs of one source (an image, or frame 0 of a video) with ``num_pairs`` frames spread evenly
    over the driving video (or the driving image).  ``kind`` is ``"self"`` when the two files share an
    identity (``<identity>__...`` names), else ``"cross"``.

    Raises:
        InputError: a missing file, a file that is neither image nor video, or ``num_pairs < 1``.
    """
    if num_pairs < 1:
        raise InputError(f"num_pairs must be >= 1, got {num_pairs}")
    s, d = Path(source), Path(driving)
    for p, what in ((s, "source"), (d, "driving")):
        if not p.is_file():
            raise InputError(f"{what} {str(p)!r} does not exist")
        if p.suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
            raise InputError(f"{what} {p.name!r}: expected an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                             f"({', '.join(VIDEO_SUFFIXES)})")
    kind = "self" if identity_of(s) == identity_of(d) else "cross"
    if d.suffix.lower() in IMAGE_SUFFIXES:
        return [PairSpec(str(s), str(d), 0, 0, kind)]
    n = frame_count(d)
    if n < 1:
        raise InputError(f"driving video {d.name!r} has no frames")
    frames = sorted({round(x) for x in np.linspace(0, n - 1, min(num_pairs, n))})
    return [PairSpec(str(s), str(d), 0, f, kind) for f in frames]


# -- frames ------------------------------------------------------------------------------------------------
# Minimal readers: to be replaced by plugtalk.io.video / plugtalk.io.images once those are on main.

def _read_video_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    import av

    want = sorted(indices)
    found: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                if i in indices:
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= want[-1]:
                    break
    except (av.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"video {path.name!r} cannot be read ({e})") from None
    return found


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"image {path.name!r} cannot be read ({e})") from None


def _fit(frame: np.ndarray, size: int, label: str) -> np.ndarray:
    h, w = frame.shape[:2]
    if (h, w) == (size, size):
        return frame
    if h != w:
        raise InputError(f"{label} is {w}x{h}: expected a square face crop (make one with plugtalk.face)")
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.LANCZOS))


class LoadedPairs:
    """Frames of the readable pairs: ``sources``, ``drivings`` ``(M, S, S, 3)`` uint8, ``indices`` (into the
    pair list) of those pairs, and ``problems`` ``{pair index: reason}`` for the others."""

    def __init__(self, sources: np.ndarray, drivings: np.ndarray, indices: list[int], problems: dict[int, str]):
        self.sources, self.drivings, self.indices, self.problems = sources, drivings, indices, problems


def load_pair_frames(pairs: Sequence[PairSpec], size: int) -> LoadedPairs:
    """Read every pair's frames (each file decoded once), resized to ``size`` if square and of another size.

    A pair whose file is missing or unreadable, whose frame is past the end or whose frame is not
    square is reported in ``problems`` instead of raising.
    """
    wanted: dict[Path, set[int]] = {}
    for p in pairs:
        for f, i in ((p.source, p.source_frame), (p.driving, p.driving_frame)):
            path = Path(f)
            wanted.setdefault(path, set()).add(0 if path.suffix.lower() in IMAGE_SUFFIXES else i)
    frames: dict[tuple[Path, int], np.ndarray] = {}
    errors: dict[Path, str] = {}
    for path, idx in wanted.items():
        try:
            if not path.is_file():
                raise InputError(f"{str(path)!r} does not exist")
            if path.suffix.lower() in IMAGE_SUFFIXES:
                frames[(path, 0)] = _read_image(path)
            else:
                frames.update({(path, i): f for i, f in _read_video_frames(path, idx).items()})
        except InputError as e:
            errors[path] = str(e)
    srcs, drvs, ok, problems = [], [], [], {}
    for k, p in enumerate(pairs):
        try:
            pair = []
            for f, i, label in ((p.source, p.source_frame, p.labels[0]), (p.driving, p.driving_frame, p.labels[1])):
                path = Path(f)
                if path in errors:
                    raise InputError(errors[path])
                key = (path, 0 if path.suffix.lower() in IMAGE_SUFFIXES else i)
                if key not in frames:
                    raise InputError(f"frame {i} is past the end of {path.name!r}")
                pair.append(_fit(frames[key], size, label))
        except InputError as e:
            problems[k] = str(e)
            continue
        srcs.append(pair[0]), drvs.append(pair[1]), ok.append(k)
    empty = np.zeros((0, size, size, 3), np.uint8)
    return LoadedPairs(np.stack(srcs) if srcs else empty, np.stack(drvs) if drvs else empty, ok, problems)
