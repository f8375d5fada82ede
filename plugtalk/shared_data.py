"""Locate the shared folder (real face data, parity fixtures) that sits beside a plugtalk checkout.

Looked up in order: ``$PLUGTALK_SHARED``, ``<repo>/../shared`` (next to an editable install), and
``./../shared`` from the working directory.  Nothing from it is ever copied into the package.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["find_shared", "shared_path", "manifest", "SharedDataMissing"]


class SharedDataMissing(FileNotFoundError):
    """The shared folder (or a file in it) is not present on this machine."""


@lru_cache(maxsize=None)
def find_shared() -> Path | None:
    """Return the shared folder, or ``None`` when it is not present."""
    candidates = []
    env = os.environ.get("PLUGTALK_SHARED")
    if env:
        candidates.append(Path(env))
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared")
    candidates.append(Path.cwd().parent / "shared")
    for c in candidates:
        if (c / "README.md").is_file() or (c / "data").is_dir() or (c / "fixtures").is_dir():
            return c.resolve()
    return None


def shared_path(*parts: str) -> Path:
    """Path of a file inside the shared folder.

    Raises:
        SharedDataMissing: the shared folder or the file does not exist (message says where it looked).
    """
    root = find_shared()
    if root is None:
        raise SharedDataMissing("the shared folder was not found: set PLUGTALK_SHARED or put 'shared/' beside "
                                "the plugtalk checkout")
    p = root.joinpath(*parts)
    if not p.exists():
        raise SharedDataMissing(f"{p} does not exist")
    return p


def manifest() -> dict:
    """The real-data MANIFEST (sources, identities, licences) as a dict."""
    return json.loads(shared_path("data", "MANIFEST.json").read_text())
