"""Strict JSON output for reports (eval, bench, probe, prepare): atomic, and valid for any JSON reader.

Python's ``json`` writes ``Infinity``/``NaN``, which strict readers reject; non-finite floats are
written as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` instead (``float("inf")`` reads them back),
e.g. the PSNR of identical frames.  numpy scalars and arrays become plain numbers and lists.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path

__all__ = ["to_jsonable", "write_json"]


def to_jsonable(obj: Any, nonfinite: str = "string") -> Any:
    """Recursively convert numpy values, paths and non-finite floats to strict-JSON values.

    Args:
        nonfinite: ``"string"``: NaN/inf become ``"nan"``, ``"inf"``, ``"-inf"`` (metric reports, where
            PSNR inf means identical frames); ``"null"``: they become ``None`` (a value that could not be
            computed, as in the probe's per-pair scores).

    Raises:
        ValueError: unknown ``nonfinite``.
    """
    if nonfinite not in ("string", "null"):
        raise ValueError(f"nonfinite must be 'string' or 'null', got {nonfinite!r}")
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, nonfinite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, nonfinite) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), nonfinite)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), nonfinite)
    if isinstance(obj, float) and not math.isfinite(obj):
        if nonfinite == "null":
            return None
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON, atomically (temporary file + rename)."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)
