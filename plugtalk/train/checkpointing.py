"""Training checkpoints: a folder per step, committed atomically.

``<output>/checkpoints/step-00001000/`` holds

* ``model.safetensors`` - the model (:meth:`plugtalk.Retrofitted.save_pretrained`; loads with
  :func:`plugtalk.load_retrofitted`);
* ``discriminator.safetensors`` - the discriminator, when there is one;
* ``state.pt`` - the training state: optimizer and scheduler states, step, epoch and position in the
  epoch, RNG states (python, numpy, torch, CUDA) of every rank, the config.  Only tensors and plain
  Python values, read back with ``torch.load(weights_only=True)``.

The files are written into a hidden staging folder (``.step-00001000.partial-*``) that is renamed
to its final name only when complete, so a kill at any moment leaves either the complete folder or
a staging folder that :func:`latest_checkpoint` ignores and :func:`remove_partials` deletes.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.atomic import atomic_path

__all__ = ["MODEL_FILE", "DISCRIMINATOR_FILE", "STATE_FILE", "checkpoint_name", "save_checkpoint",
           "list_checkpoints", "latest_checkpoint", "remove_partials", "load_state", "capture_rng", "restore_rng"]

MODEL_FILE = "model.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
STATE_FILE = "state.pt"
_NAME = re.compile(r"^step-(\d{8,})$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def _write_state(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def save_checkpoint(root: str | os.PathLike, step: int, model, discriminator, state: dict[str, Any],
                    keep_last: int | None = None, model_metadata: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and keep only the ``keep_last`` newest.

    Args:
        model: a :class:`~plugtalk.Retrofitted` (saved with ``save_pretrained``).
        discriminator: a :class:`~plugtalk.train.discriminator.Discriminator` or ``None``.
        state: training state (tensors and plain Python values only).

    Returns:
        The checkpoint folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=root))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it 0o700
    try:
        model.save_pretrained(staging / MODEL_FILE, model_metadata)
        if discriminator is not None:
            discriminator.save_pretrained(staging / DISCRIMINATOR_FILE)
        _write_state(state, staging / STATE_FILE)
        if final.exists():  # re-saving a step (e.g. after a resume): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=root))
            os.replace(final, old / final.name)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if keep_last:
        for _, old_path in list_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old_path, ignore_errors=True)
    return final


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as ``(step, folder)``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m and p.is_dir() and (p / STATE_FILE).is_file() and (p / MODEL_FILE).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_partials(root: str | os.PathLike) -> list[Path]:
    """Delete staging folders left by an interrupted save; returns what was removed."""
    root = Path(root)
    if not root.is_dir():
        return []
    gone = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(".step-")
            and (".partial-" in p.name or ".old-" in p.name)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def load_state(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read ``state.pt`` of a checkpoint folder with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing, truncated or not a plugtalk training state.
    """
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for corrupt files
        raise CheckpointError(f"{str(path)!r} is not a readable training state (truncated or unsafe?): {e}") from e
    if not isinstance(state, dict) or state.get("kind") != "plugtalk-train-state":
        raise CheckpointError(f"{str(path)!r} is not a plugtalk training state")
    return state


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU) and every CUDA device, as weights-only-loadable values."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]][:torch.cuda.device_count()])
