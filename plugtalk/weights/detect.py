"""What a weights file is, judged by its content (never its name), and whether its numbers are finite.

* :func:`sniff_format` reads a file's first bytes: safetensors (an 8-byte little-endian header length, then
  a JSON header), a torch zip archive (``torch.save``'s format since PyTorch 1.6), a legacy torch pickle, or
  none of these.  So a safetensors file works under any name, and a text file named ``.pt`` gets a clear
  "not a PyTorch checkpoint or safetensors file" instead of a deep traceback.
* :func:`check_finite` refuses NaN / infinite weights at load time, naming the file and the first bad tensor,
  rather than letting them surface 30 s later as NaN frames.
* :func:`read_torch_checkpoint` reads a ``torch.save`` file's state dict with ``weights_only=True`` (no pickled
  code runs), from the container keys its caller names (the backbone registry: its official containers).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Literal, Mapping, Sequence

import torch
from torch import Tensor

from ..errors import CheckpointError

__all__ = ["WeightsFormat", "sniff_format", "check_finite", "NOT_WEIGHTS", "read_torch_checkpoint",
           "describe_key_problems", "SAFE_GLOBALS", "GENERIC_CONTAINERS", "require_weights_file"]

#: The only non-tensor types official training checkpoints need beyond torch's weights-only defaults.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)
#: Container keys tried when a caller names none of its own.
GENERIC_CONTAINERS = ("state_dict", "model")

WeightsFormat = Literal["safetensors", "torch-zip", "torch-pickle", "unknown"]

#: What a file of none of the known formats is called in errors.
NOT_WEIGHTS = "not a PyTorch checkpoint or safetensors file"


def sniff_format(path: str | os.PathLike) -> WeightsFormat:
    """The format of the weights file ``path`` from its first bytes.

    Returns:
        ``"safetensors"``, ``"torch-zip"`` (``torch.save``), ``"torch-pickle"`` (legacy ``torch.save`` /
        a plain pickle) or ``"unknown"`` (empty, text, random bytes, ...).

    Raises:
        OSError: the file cannot be read.
    """
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle PROTO opcode + protocol 2..5
        return "torch-pickle"
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


def check_finite(tensors: Mapping[str, torch.Tensor], origin: str) -> None:
    """Refuse weights holding NaN or infinite values.

    Args:
        tensors: a state dict (non-floating tensors are skipped).
        origin: the file, as shown in the error (e.g. ``repr(str(path))``).

    Raises:
        CheckpointError: naming ``origin``, the first bad tensor and how many of its values are bad.
    """
    for name, t in tensors.items():
        if not (torch.is_tensor(t) and (t.is_floating_point() or t.is_complex())):
            continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            kinds = [k for k, m in (("NaN", torch.isnan(t)), ("inf", torch.isinf(t))) if bool(m.any())]
            raise CheckpointError(f"{origin}: weight {name!r} holds {bad} {'/'.join(kinds)} value(s) of "
                                  f"{t.numel()}; the checkpoint is corrupt or comes from a diverged training run")


def require_weights_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is an existing file; a folder is said to be one (an ONNX export folder is sent
    to ``plugtalk animate --runtime onnx``), not "does not exist".

    Raises:
        CheckpointError: no such file, or a folder.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "plugtalk-onnx.json").is_file():
            raise CheckpointError(f"checkpoint {str(p)!r} is an ONNX export folder, not a weights file: run it with "
                                  "plugtalk animate --runtime onnx -c FOLDER")
        raise CheckpointError(f"checkpoint {str(p)!r} is a folder, not a weights file (.safetensors or official .pt)")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    return p


def describe_key_problems(missing, unexpected, mismatched, limit: int = 8) -> str:
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label} key(s): {', '.join(items[:limit])}{more}")
    if mismatched:
        shown = "; ".join(f"{k}: file {a} vs expected {b}" for k, a, b in mismatched[:limit])
        parts.append(f"{len(mismatched)} shape mismatch(es): {shown}")
    return "; ".join(parts)


def _describe_file(path: Path) -> str:
    return f"{str(path)!r} ({path.stat().st_size} bytes)"


def _pickle_detail(e: BaseException) -> str:
    """What torch's weights-only unpickler objected to (``: it needs os.system``), without its advice to load
    the file with ``weights_only=False`` (which would run the code) and without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = (re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
         or re.search(r"Unsupported (?:operand|class) ([^\s,]+)", text))
    return f": it needs {m.group(1)}" if m else ""


def read_torch_checkpoint(path: str | os.PathLike, container: str | None = None, *,
                          containers: Sequence[str] = GENERIC_CONTAINERS,
                          guess: Callable[[Iterable[str]], str | None] | None = None) -> dict[str, Tensor]:
    """Load the state dict of a ``torch.save`` checkpoint without executing pickled code
    (``torch.load(weights_only=True)``, with exactly :data:`SAFE_GLOBALS` added).

    Args:
        path: the ``.pt``/``.pth`` file.
        container: top-level key holding the state dict (``'gen'``, ``'audio2lip'``, ...); ``None`` picks
            the first of ``containers`` present, or uses the file itself if it is a flat state dict.
        containers: the container keys to look for (the backbone registry passes its backbones' official
            containers, then ``state_dict`` and ``model``).
        guess: ``keys -> name`` of the backbone a state dict looks like, for the error message (the registry's
            :func:`~plugtalk.backbones.registry.guess_official_backbone`), or ``None``.

    Raises:
        CheckpointError: missing/empty/truncated file, a file that is no torch checkpoint at all (safetensors,
            text, random bytes: judged by content), a pickle that needs code to load (refused), a file that
            holds no state dict, one without ``container`` (naming the keys it has), or NaN / infinite weights.
    """
    p = require_weights_file(path)
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty")
    fmt = sniff_format(p)
    if fmt == "safetensors":
        raise CheckpointError(f"{str(p)!r} is a safetensors file (plugtalk's format), not an official torch "
                              "checkpoint: use it as it is (plugtalk animate -c FILE, plugtalk.backbones.load())")
    if fmt == "unknown":
        raise CheckpointError(f"{_describe_file(p)} is {NOT_WEIGHTS}")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {_describe_file(p)}: loading it would run code stored in the file "
                              f"(a pickle that is not a weights-only torch checkpoint{_pickle_detail(e)}), so it is "
                              "refused") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError,
            IndexError) as e:
        raise CheckpointError(f"cannot read {_describe_file(p)}: truncated or not a torch checkpoint ({e})") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{str(p)!r} holds a {type(obj).__name__}, not a checkpoint dict")
    containers = tuple(containers)
    if container is not None and container in obj:
        sd = obj[container]
    elif container is None and any(k in obj for k in containers):
        sd = obj[next(k for k in containers if k in obj)]
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        sd = obj
    else:
        inner = [k for k in containers if k in obj]
        looks = guess(obj[inner[0]].keys()) if guess and inner and isinstance(obj[inner[0]], Mapping) else None
        hint = f"; it looks like a {looks!r} checkpoint" if looks else ""
        raise CheckpointError(f"{str(p)!r} has no {container!r} entry (top-level keys: {sorted(map(str, obj))[:10]}){hint}")
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(p)!r}: the {container or 'top-level'} entry is not a state dict of tensors")
    check_finite(sd, repr(str(p)))
    return dict(sd)
