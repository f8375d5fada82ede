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


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy values, paths and non-finite floats to strict-JSON values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
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
