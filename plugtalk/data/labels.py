"""Per-clip labels (e.g. emotion) of a clip folder, read through one function: :func:`clip_labels`.

Where the labels come from, first found wins:

1. ``<folder>/manifest.jsonl`` - the clip manifest of ``plugtalk prepare`` (JSON Lines, one clip per
   line: ``{"clip": NAME, "identity": ..., "split": ..., "labels": {"emotion": "happy", ...}, "audio": ...}``;
   the clip is named by ``clip``, ``name`` or the stem of ``path``);
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


def _clip_name(entry: dict[str, Any]) -> str | None:
    for key in ("clip", "name"):
        if isinstance(entry.get(key), str):
            return entry[key]
    if isinstance(entry.get("path"), str):
        p = Path(entry["path"])
        return p.stem if p.suffix else p.name
    return None


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_LABEL_FILE_BYTES:
        raise InputError(f"{path}: label file larger than {MAX_LABEL_FILE_BYTES >> 20} MiB")
    return path.read_text(encoding="utf-8")


def _manifest(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for n, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}, line {n}: not JSON ({e.msg})") from None
        name = _clip_name(entry) if isinstance(entry, dict) else None
        labels = entry.get("labels", {}) if isinstance(entry, dict) else None
        if name is None or not isinstance(labels, dict):
            raise InputError(f"{path}, line {n}: expected an object with 'clip' (or 'name' / 'path') and a "
                             "'labels' object")
        out[name] = dict(labels)
    return out


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
