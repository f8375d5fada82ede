"""Which pairs and frames a benchmark scores (the v2 reference protocol, for any clip folder).

Data folders (``--data``):

* a ``plugtalk prepare`` output: the clips ``manifest.jsonl`` lists (its ``test`` split when it has one,
  else every clip), identities from the manifest;
* the shared layout (``faces/test/<identity>__<clip>.mp4``, identities from ``MANIFEST.json``);
* any folder of ``<identity>__<clip>.mp4`` clips.

Portrait stills (``stills/*.png`` in the folder, or ``--stills DIR``) are extra sources; a still is
``stylised`` when its ``MANIFEST.json`` note names an artwork (:data:`STYLISED_WORDS`), else ``photo``;
clip frames are photos.

* **cross-reenactment**: every source (each still, the first frame of each clip) driven by every clip of
  *another* identity (never one identity on both sides), scored on ``frames`` frames evenly spaced over the
  driver's first :data:`DRIVER_FRAMES`;
* **self-reenactment**: each clip from its own first frame, scored on ``self_frames`` frames after it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["Source", "Pair", "BenchData", "load_data", "cross_pairs", "self_pairs", "spread", "frame_indices",
           "STYLISED_WORDS", "DRIVER_FRAMES"]

STYLISED_WORDS = ("painting", "painted", "drawing", "sculpture", "statue", "bust", "cartoon", "caricature",
                  "digital art")
DRIVER_FRAMES = 100
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclasses.dataclass(frozen=True)
class Source:
    """A source image: ``name`` (unique), ``identity``, ``path`` (a still or a clip: its first frame),
    ``style`` (``"photo"`` | ``"stylised"``), ``note``."""

    name: str
    identity: str
    path: Path
    style: str = "photo"
    note: str = ""

    @property
    def is_clip(self) -> bool:
        return self.path.suffix.lower() not in IMAGE_SUFFIXES


@dataclasses.dataclass(frozen=True)
class Pair:
    """``kind`` (``"cross"`` | ``"self"``), the source, the driving clip and its identity."""

    kind: str
    source: Source
    driving: Path
    driving_identity: str

    @property
    def key(self) -> str:
        return f"{self.source.name}__{self.driving.stem}"


@dataclasses.dataclass(frozen=True)
class BenchData:
    """The clips ``[(path, identity)]`` and stills of a data folder, and where they came from."""

    clips: tuple[tuple[Path, str], ...]
    stills: tuple[Source, ...]
    layout: str


def style_of(note: str) -> str:
    """``"stylised"`` when the note names an artwork (:data:`STYLISED_WORDS`), else ``"photo"``."""
    return "stylised" if any(w in note.lower() for w in STYLISED_WORDS) else "photo"


def _shared_manifest(folder: Path) -> dict[str, dict]:
    path = folder / "MANIFEST.json"
    if not path.is_file():
        return {}
    try:
        return {f["path"]: f for f in json.loads(path.read_text()).get("files", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError(f"{str(path)!r} is not a data manifest ({e})") from None


def _stills(folder: Path | None, entries: dict[str, dict]) -> list[Source]:
    if folder is None or not folder.is_dir():
        return []
    out = []
    for still in sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
        e = entries.get(f"stills/{still.name}", {})
        note = e.get("note") or ""
        out.append(Source(still.stem, e.get("identity", still.stem), still, style_of(note), note))
    return out


def load_data(data: str | os.PathLike, *, split: str = "test", stills: str | os.PathLike | None = None) -> BenchData:
    """The clips and stills of ``data`` (see the module docstring).

    Raises:
        InputError: ``data`` is not a folder, or holds no clip of ``split``.
    """
    from ..data.manifest import read_manifest
    from ..io.paths import VIDEO_SUFFIXES

    root = Path(data)
    if not root.is_dir():
        raise InputError(f"--data {str(root)!r} is not a folder")
    entries = _shared_manifest(root)
    records = read_manifest(root)
    if records:
        chosen = [r for r in records.values() if r.split == split] or \
            ([] if any(r.split for r in records.values()) else list(records.values()))
        clips = [(root / r.clip, r.identity) for r in sorted(chosen, key=lambda r: r.clip)]
        layout = f"plugtalk prepare manifest ({split} split)" if any(r.split for r in chosen) else \
            "plugtalk prepare manifest (no split: every clip)"
    elif (root / "faces" / split).is_dir():
        files = sorted((root / "faces" / split).glob("*.mp4"))
        clips = [(c, (entries.get(f"faces/{split}/{c.name}") or {}).get("identity", c.stem.split("__")[0]))
                 for c in files]
        layout = f"shared layout (faces/{split})"
    else:
        files = sorted(f for f in root.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES and not f.name.startswith("."))
        clips = [(c, c.stem.split("__")[0]) for c in files]
        layout = "folder of <identity>__<clip> videos"
    if not clips:
        raise InputError(f"--data {str(root)!r}: no clip of the {split!r} split ({layout})")
    still_dir = Path(stills) if stills is not None else root / "stills"
    if stills is not None and not still_dir.is_dir():
        raise InputError(f"--stills {str(still_dir)!r} is not a folder")
    return BenchData(tuple(clips), tuple(_stills(still_dir, entries)), layout)


def sources(data: BenchData) -> list[Source]:
    """Every still, then the first frame of every clip."""
    return [*data.stills, *(Source(f"first-frame_{c.stem}", ident, c, "photo", "first frame of a clip")
                            for c, ident in data.clips)]


def cross_pairs(data: BenchData) -> list[Pair]:
    """Every source driven by every clip of another identity."""
    return [Pair("cross", s, c, ident) for s in sources(data) for c, ident in data.clips if ident != s.identity]


def self_pairs(data: BenchData) -> list[Pair]:
    """Each clip from its own first frame."""
    return [Pair("self", s, s.path, s.identity) for s in sources(data) if s.is_clip]


def spread(pairs: list[Pair], n: int | None) -> list[Pair]:
    """At most ``n`` pairs, taken evenly over the list (so a small run still mixes sources and drivers)."""
    if n is None or n >= len(pairs):
        return list(pairs)
    return [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, n).round().astype(int)] if n > 0 else []


def frame_indices(available: int, count: int, start: int = 0) -> list[int]:
    """``count`` frame indices evenly spaced over ``[start, available)`` (fewer if the clip is shorter)."""
    span = available - start
    if span <= 0:
        return []
    return sorted({int(i) for i in np.linspace(start, available - 1, min(count, span)).round()})
