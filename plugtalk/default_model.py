"""The embedded default model: a small LIA-family animator trained on real faces, shipped with the package.

``plugtalk demo``, ``plugtalk probe`` and ``plugtalk animate`` use it when no checkpoint is given.
See docs/model_card.md for its data, budget, metrics and limits.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import torch

__all__ = ["DEFAULT_MODEL_FILE", "COMPARE_MODEL_FILE", "default_model_path", "compare_model_path",
           "load_default_model", "DefaultModelMissing"]

DEFAULT_MODEL_FILE = "plugtalk-small-fixtalk.safetensors"
#: The other side of the reference experiment's ablation, trained under the same budget: the baseline (no
#: EMI/EDI) when the default carries FixTalk's modules, FixTalk's full model (+EMI+EDI) when the default is the
#: baseline.  When the package carries it, ``plugtalk demo`` also writes ``compare.mp4`` (it vs the default).
COMPARE_MODEL_FILE = "plugtalk-small-compare.safetensors"


class DefaultModelMissing(FileNotFoundError):
    """The package was installed without its embedded default weights."""


def default_model_path() -> Path | None:
    """Path of the embedded default weights, or ``None`` if this installation has none."""
    p = Path(str(resources.files("plugtalk") / "assets" / DEFAULT_MODEL_FILE))
    return p if p.is_file() else None


def compare_model_path() -> Path | None:
    """Path of the shipped comparison weights (:data:`COMPARE_MODEL_FILE`), or ``None`` if not installed."""
    p = Path(str(resources.files("plugtalk") / "assets" / COMPARE_MODEL_FILE))
    return p if p.is_file() else None


def load_default_model(device: str | torch.device = "cpu", strict: bool = True):
    """Load the embedded default model as a :class:`~plugtalk.retrofitting.Retrofitted` (eval mode).

    Raises:
        DefaultModelMissing: ``strict`` and no embedded weights; without ``strict`` a warning is issued and
            ``None`` returned so callers can fall back to random weights.
    """
    from .retrofitting import load_retrofitted

    path = default_model_path()
    if path is None:
        msg = (f"no embedded default model ({DEFAULT_MODEL_FILE}) in this installation; "
               "pass --checkpoint with your own weights")
        if strict:
            raise DefaultModelMissing(msg)
        warnings.warn(msg, stacklevel=2)
        return None
    return load_retrofitted(path, device)
