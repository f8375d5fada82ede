"""The clip manifest of a prepared folder: ``manifest.jsonl``, one JSON object per clip (JSON Lines).

Fields of a line: ``clip`` (file name in the folder), ``identity``, ``split`` (``"train"`` / ``"test"`` /
``null``), ``labels`` (dataset labels: MEAD's ``emotion``, ``intensity``, ...), ``frames`` and ``fps`` (of the
written clip), ``audio`` (the 16 kHz wav beside the clip, or ``null``), ``crop_box_xyxy`` (source pixels),
``source`` (the source video), ``source_frames`` (``[start, end)`` at ``fps``), ``dataset`` (the recipe),
``boxes`` (``"detected"`` or ``"annotated"``).  ``failures.json`` beside it lists the videos that gave no clip
and why.  Both are rewritten atomically after every video, so an interrupted run leaves a valid manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.jsonfile import to_jsonable, write_json

__all__ = ["MANIFEST_JSONL", "FAILURES_NAME", "ClipRecord", "read_manifest", "write_manifest", "write_failures"]

MANIFEST_JSONL = "manifest.jsonl"
FAILURES_NAME = "failures.json"
MAX_MANIFEST_BYTES = 512 << 20


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One line of ``manifest.jsonl`` (see the module docstring)."""

    clip: str
    identity: str
    split: str | None
    labels: Mapping[str, object]
    frames: int
    fps: float
    audio: str | None
    crop_box_xyxy: tuple[int, int, int, int] | None
    source: str
    source_frames: tuple[int, int]
    dataset: str = "folder"
    boxes: str = "detected"

    def audio_path(self, folder: str | os.PathLike) -> Path | None:
        """The clip's 16 kHz mono wav in ``folder`` (the prepared folder), or ``None``."""
        return None if self.audio is None else Path(folder) / self.audio

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["labels"] = dict(self.labels)
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "ClipRecord":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["labels"] = dict(kw.get("labels") or {})
        kw["crop_box_xyxy"] = tuple(kw["crop_box_xyxy"]) if kw.get("crop_box_xyxy") else None
        kw["source_frames"] = tuple(kw.get("source_frames") or (0, int(kw["frames"])))
        return cls(**kw)


def read_manifest(folder: str | os.PathLike) -> dict[str, ClipRecord]:
    """``{clip file name: ClipRecord}`` of ``folder/manifest.jsonl`` (empty when there is none).

    Raises:
        InputError: the manifest is too large, or a line is not a clip record (naming the line).
    """
    path = Path(folder) / MANIFEST_JSONL
    if not path.is_file():
        return {}
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"{str(path)!r} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    out: dict[str, ClipRecord] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = ClipRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"{str(path)!r} line {n} is not a clip record ({e})") from None
        out[rec.clip] = rec
    return out


def write_manifest(folder: str | os.PathLike, records: Iterable[ClipRecord]) -> Path:
    """Write ``folder/manifest.jsonl`` (sorted by clip name) atomically."""
    path = Path(folder) / MANIFEST_JSONL
    lines = [json.dumps(to_jsonable(r.to_json()), allow_nan=False) for r in sorted(records, key=lambda r: r.clip)]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines))
    return path


def write_failures(folder: str | os.PathLike, failures: Iterable[tuple[str, str]]) -> Path:
    """``folder/failures.json``: ``[{"source", "error"}]`` of the videos that gave no clip."""
    return write_json(Path(folder) / FAILURES_NAME,
                      [{"source": str(s), "error": e} for s, e in sorted(failures)], indent=1)
