"""Source/driving pairs for the probe, from real clips.

* Self-reenactment pairs: two frames far apart in one clip (the first and the last quarter).
* Cross-reenactment pairs: a frame of one identity drives a frame of another.

Clips are found and read by :mod:`plugtalk.data.datasets` (videos, or folders of frames; identity = the
name's prefix before ``__``, see the shared data's MANIFEST); a single image file is a one-frame clip
whose identity is its file name's prefix before ``__``.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data.datasets import IMAGE_SUFFIXES, Clip, ClipStore, list_clips
from ..data.datasets import identity_of as clip_identity
from ..errors import InputError
from ..io.paths import VIDEO_SUFFIXES
from .spec import PairSpec

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "LoadedPairs",
    "detect_face",
    "identity_of",
    "load_pair_frames",
    "pairs_from_files",
    "pairs_from_folder",
    "usable_pairs_from_folder",
]


def _is_image(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()


def identity_of(path: str | os.PathLike) -> str:
    """Identity of a clip (:func:`plugtalk.data.datasets.identity_of`) or of a single image (its name's
    prefix before ``__``, else the whole name): ``"obama__obama_00.mp4"`` -> ``"obama"``."""
    return Path(path).stem.split("__", 1)[0] if _is_image(path) else clip_identity(path)


def _clip(path: str | os.PathLike) -> Clip:
    """The clip at ``path``: a video, a folder of frames, or one image (a one-frame clip)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{str(p)!r} does not exist")
    if _is_image(p):
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"image {p.name!r} cannot be read ({e})") from None
        return Clip(p, identity_of(p), p.stem, "frames", 1, h, w, (p,))
    if p.is_file() and p.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"{p.name!r}: expected an image ({', '.join(IMAGE_SUFFIXES)}) or a video "
                         f"({', '.join(VIDEO_SUFFIXES)})")
    found = [c for c in list_clips([p], min_frames=1) if c.path == p]
    if not found:
        raise InputError(f"{str(p)!r} is neither a video nor a folder of frames")
    return found[0]


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
        root: a folder (or several) of ``<identity>__<clip>`` videos or frame folders, searched
            recursively (:func:`plugtalk.data.datasets.list_clips`).

    Returns:
        The pairs, and notes for the user (e.g. no cross pairs possible).

    Raises:
        InputError: ``num_pairs < 1``, a missing folder, an unreadable video (named), or no clip.
    """
    if num_pairs < 1:
        raise InputError(f"num_pairs must be >= 1, got {num_pairs}")
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    notes: list[str] = []
    clips: dict[str, list[tuple[Path, int]]] = {}
    for c in list_clips(roots, min_frames=2):
        clips.setdefault(c.identity, []).append((c.path, c.num_frames))
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
    """Pairs of one source (an image, or frame 0 of a video / frame folder) with ``num_pairs`` frames
    spread evenly over the driving clip (or the driving image).  ``kind`` is ``"self"`` when the two
    share an identity (``<identity>__...`` names, see :func:`identity_of`), else ``"cross"``.

    Raises:
        InputError: a missing or unreadable file, a file that is neither image nor video, or ``num_pairs < 1``.
    """
    if num_pairs < 1:
        raise InputError(f"num_pairs must be >= 1, got {num_pairs}")
    clips = {}
    for p, what in ((source, "source"), (driving, "driving")):
        try:
            clips[what] = _clip(p)
        except InputError as e:
            raise InputError(f"{what}: {e}") from None
    s, d = clips["source"], clips["driving"]
    kind = "self" if s.identity == d.identity else "cross"
    frames = sorted({round(x) for x in np.linspace(0, d.num_frames - 1, min(num_pairs, d.num_frames))})
    return [PairSpec(str(s.path), str(d.path), 0, f, kind) for f in frames]


# -- frames ------------------------------------------------------------------------------------------------

class LoadedPairs:
    """Frames of the readable pairs: ``sources``, ``drivings`` ``(M, S, S, 3)`` uint8, ``indices`` (into the
    pair list) of those pairs, and ``problems`` ``{pair index: reason}`` for the others."""

    def __init__(self, sources: np.ndarray, drivings: np.ndarray, indices: list[int], problems: dict[int, str]):
        self.sources, self.drivings, self.indices, self.problems = sources, drivings, indices, problems


def load_pair_frames(pairs: Sequence[PairSpec], size: int) -> LoadedPairs:
    """Read every pair's two frames (:class:`plugtalk.data.datasets.ClipStore`: videos seek to the frame),
    resized to ``size`` x ``size`` when square and of another size.

    A pair whose file is missing or unreadable, whose frame is past the end, or whose frame is not a
    square crop is reported in ``problems`` instead of raising.
    """
    paths = list(dict.fromkeys(Path(f) for p in pairs for f in (p.source, p.driving)))
    clips: dict[Path, int] = {}
    found: list[Clip] = []
    errors: dict[Path, str] = {}
    for path in paths:
        try:
            c = _clip(path)
            if c.height != c.width:
                raise InputError(f"{path.name!r} is {c.width}x{c.height}: expected square face crops "
                                 "(make them with plugtalk prepare)")
            clips[path] = len(found)
            found.append(c)
        except InputError as e:
            errors[path] = str(e)
    store = ClipStore(found, size=size, frame_access="seek")
    srcs, drvs, ok, problems = [], [], [], {}
    for k, p in enumerate(pairs):
        try:
            pair = []
            for f, i in ((p.source, p.source_frame), (p.driving, p.driving_frame)):
                path = Path(f)
                if path in errors:
                    raise InputError(errors[path])
                c = found[clips[path]]
                i = 0 if _is_image(path) else i
                if i >= c.num_frames:
                    raise InputError(f"frame {i} is past the end of {path.name!r} ({c.num_frames} frames)")
                pair.append(store.frames(clips[path], [i])[0])
        except InputError as e:
            problems[k] = str(e)
            continue
        srcs.append(pair[0]), drvs.append(pair[1]), ok.append(k)
    empty = np.zeros((0, size, size, 3), np.uint8)
    return LoadedPairs(np.stack(srcs) if srcs else empty, np.stack(drvs) if drvs else empty, ok, problems)
