"""What a weights file is, judged by its content (never its name), and whether its numbers are finite.

* :func:`sniff_format` reads a file's first bytes: safetensors (an 8-byte little-endian header length, then
  a JSON header), a torch zip archive (``torch.save``'s format since PyTorch 1.6), a legacy torch pickle, or
  none of these.  So a safetensors file works under any name, and a text file named ``.pt`` gets a clear
  "not a PyTorch checkpoint or safetensors file" instead of a deep traceback.
* :func:`check_finite` refuses NaN / infinite weights at load time, naming the file and the first bad tensor,
  rather than letting them surface 30 s later as NaN frames.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Literal, Mapping

import torch

from .errors import CheckpointError

__all__ = ["WeightsFormat", "sniff_format", "check_finite", "NOT_WEIGHTS"]

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
