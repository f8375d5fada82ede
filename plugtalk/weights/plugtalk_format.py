"""plugtalk's own weight format: safetensors with a JSON description in the file's metadata.

``metadata["plugtalk"]`` holds ``{"format": 1, "kind": ..., "config": {...}, ...}`` so a file can be
rebuilt into its module without any pickled code (the HF diffusers idea of "config + weights").
Writes are atomic (temporary file + rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..io.atomic import atomic_path
from .detect import check_finite, read_torch_checkpoint, require_weights_file, sniff_format

__all__ = ["FORMAT_VERSION", "save_safetensors", "load_safetensors", "read_metadata", "read_state_dict"]

FORMAT_VERSION = 1
_META_KEY = "plugtalk"


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``tensors`` (made contiguous, on CPU) and JSON ``metadata`` atomically to ``path``."""
    meta = {"format": FORMAT_VERSION, **(dict(metadata) if metadata else {})}
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata={_META_KEY: json.dumps(meta, sort_keys=True)})
    return Path(path)


def _check_file(path: str | os.PathLike) -> Path:
    p = require_weights_file(path)
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty")
    return p


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """Return the plugtalk metadata of a safetensors file (``{}`` for a plain safetensors file).

    Raises:
        CheckpointError: missing, empty, truncated or not a safetensors file.
    """
    from safetensors import safe_open

    p = _check_file(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get(_META_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{str(p)!r} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    if raw is None:
        return {}
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(p)!r} has corrupt plugtalk metadata: {e}") from e


def load_safetensors(path: str | os.PathLike, device: str | torch.device = "cpu"
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load ``(tensors, metadata)`` from a safetensors file.

    Raises:
        CheckpointError: missing, empty, truncated or not a safetensors file, or NaN / infinite weights.
    """
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{str(path)!r} could not be read as safetensors: {e}") from e
    check_finite(tensors, repr(str(path)))
    return tensors, meta


def read_state_dict(path: str | os.PathLike, container: str | None = None) -> dict[str, torch.Tensor]:
    """State dict of a user-supplied weights file, safetensors or torch ``.pt``/``.pth`` (told apart by content).

    Torch files are read with ``torch.load(weights_only=True)`` (no pickled code runs); a state dict
    nested under ``container`` (or one of ``gen``/``state_dict``/``model``) is unwrapped.

    Raises:
        CheckpointError: missing, empty, truncated, unsafe, not a state dict of tensors, or NaN / infinite
            weights.
    """
    p = _check_file(path)
    if sniff_format(p) == "safetensors":
        return load_safetensors(p)[0]
    return read_torch_checkpoint(p, container, containers=("gen", "state_dict", "model"))
