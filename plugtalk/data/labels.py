"""Per-clip labels (e.g. emotion) of a clip folder, read through one function: :func:`clip_labels`.

Where the labels come from, first found wins:

1. ``<folder>/manifest.jsonl`` - the clip manifest of ``plugtalk prepare --dataset ...``
   (:mod:`plugtalk.data.manifest`, one :class:`~plugtalk.data.manifest.ClipRecord` a line, whose ``labels``
   hold e.g. MEAD's ``emotion``);
2. ``<folder>/labels.json`` - ``{clip name: {"emotion": "happy", ...}}`` written by hand;
3. nothing: every clip unlabelled (``{}``).

A clip's name is its file stem (``<identity>__<clip>`` for ``<identity>__<clip>.mp4``) or folder name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["clip_labels", "LABEL_FILES", "MAX_LABEL_FILE_BYTES"]

LABEL_FILES = ("manifest.jsonl", "labels.json")
MAX_LABEL_FILE_BYTES = 64 << 20  #: a label file larger than this is refused (64 MiB)


def _manifest(path: Path) -> dict[str, dict[str, Any]]:
    """Labels from the clip manifest, read by its one reader (:func:`plugtalk.data.manifest.read_manifest`)."""
    from .manifest import read_manifest

    return {Path(rec.clip).stem: dict(rec.labels) for rec in read_manifest(path.parent).values()}


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise InputError(f"{path}: label file larger than {MAX_LABEL_FILE_BYTES >> 20} MiB")
    return path.read_text(encoding="utf-8")


def _labels_json(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_read(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InputError(f"{path}: expected {{clip name: {{label: value}}}}")
    return {str(k): dict(v) for k, v in data.items()}


def clip_labels(folder: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], Path | None]:
    """Labels of the clips in ``folder`` by clip name, and the file they came from (``None``: no label file).

    Raises:
        InputError: a label file that is not valid JSON / JSON Lines of the documented shape, or too large.
    """
    root = Path(folder)
    for name, reader in zip(LABEL_FILES, (_manifest, _labels_json)):
        path = root / name
        if path.is_file():
            return reader(path), path
    return {}, None
