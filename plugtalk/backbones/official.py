"""Reading official checkpoints of the registered backbones safely and mapping their keys to plugtalk's names.

Official files are ``torch.save`` dicts: ``{container: state_dict, ...}`` with the container key of
the backbone's registry entry (``'gen'``; EDTalk's audio model ``'audio2lip'``); LIA/DPE training checkpoints also pickle an ``argparse.Namespace``
of the training arguments.  They are read with ``torch.load(weights_only=True)`` - never running
pickled code - with exactly ``argparse.Namespace`` added to torch's safe globals.

Each backbone describes its conversion as data: a table ``official key -> our key`` (or a reason to
drop a key the official inference never uses) and the expected values of the official buffers.
:func:`convert_state_dict` then requires every official key to be consumed (mapped, dropped with a
reason, or a verified buffer) and every one of our keys to be filled, and reports all problems
in one :class:`~plugtalk.errors.ConversionError` that names the backbone the file looks like.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, ConversionError
from ..configurable import describe_key_problems
from ..weights_file import NOT_WEIGHTS, check_finite, require_weights_file, sniff_format

__all__ = ["OfficialKeyMap", "read_official_checkpoint", "guess_official_backbone", "convert_state_dict",
           "SAFE_GLOBALS"]

#: The only non-tensor types official training checkpoints need beyond torch's weights-only defaults.
SAFE_GLOBALS: tuple[type, ...] = (argparse.Namespace,)

#: Generic containers tried after the registered backbones' own (``BackboneEntry.official_container``).
_GENERIC_CONTAINERS = ("state_dict", "model")


def _container_keys() -> tuple[str, ...]:
    from .registry import _REGISTRY

    return tuple(dict.fromkeys([e.official_container for e in _REGISTRY.values()] + list(_GENERIC_CONTAINERS)))


@dataclasses.dataclass
class OfficialKeyMap:
    """How one backbone's official keys become ours.

    Attributes:
        rename: official key -> our state_dict key.
        drop: official key -> reason it carries no information for inference (consumed, not loaded).
        buffers: official buffer key -> the value our constructor computes itself (verified, not loaded).
        split: official key -> ``[(our_key, dim, start, stop), ...]`` for tensors we store in parts.
    """

    rename: dict[str, str] = dataclasses.field(default_factory=dict)
    drop: dict[str, str] = dataclasses.field(default_factory=dict)
    buffers: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    split: dict[str, list[tuple[str, int, int, int]]] = dataclasses.field(default_factory=dict)

    def update(self, other: "OfficialKeyMap") -> "OfficialKeyMap":
        self.rename.update(other.rename)
        self.drop.update(other.drop)
        self.buffers.update(other.buffers)
        self.split.update(other.split)
        return self

    def official_keys(self) -> set[str]:
        return set(self.rename) | set(self.drop) | set(self.buffers) | set(self.split)


def guess_official_backbone(keys) -> str | None:
    """Name of the official backbone whose signature keys appear in ``keys``, else ``None`` (the
    signatures live in the backbone registry: :func:`plugtalk.backbones.registry.guess_official_backbone`)."""
    from .registry import guess_official_backbone as guess

    return guess(keys)


def _describe_file(path: Path) -> str:
    return f"{str(path)!r} ({path.stat().st_size} bytes)"


def _pickle_detail(e: BaseException) -> str:
    """What torch's weights-only unpickler objected to (``: it needs os.system``), without its advice to load
    the file with ``weights_only=False`` (which would run the code) and without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = (re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
         or re.search(r"Unsupported (?:operand|class) ([^\s,]+)", text))
    return f": it needs {m.group(1)}" if m else ""


def read_official_checkpoint(path: str | os.PathLike, container: str | None = None) -> dict[str, Tensor]:
    """Load the state dict of an official checkpoint without executing pickled code.

    Args:
        path: the ``.pt``/``.pth`` file.
        container: top-level key holding the state dict (``'gen'``, ``'audio2lip'``, ...); ``None`` picks
            the first registered backbone's container (then ``state_dict``, ``model``) present, or uses the file itself if it is a flat state dict.

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
    containers = _container_keys()
    if container is not None and container in obj:
        sd = obj[container]
    elif container is None and any(k in obj for k in containers):
        sd = obj[next(k for k in containers if k in obj)]
    elif obj and all(isinstance(v, Tensor) for v in obj.values()):
        sd = obj
    else:
        inner = [k for k in containers if k in obj]
        looks = guess_official_backbone(obj[inner[0]].keys()) if inner and isinstance(obj[inner[0]], Mapping) else None
        hint = f"; it looks like a {looks!r} checkpoint" if looks else ""
        raise CheckpointError(f"{str(p)!r} has no {container!r} entry (top-level keys: {sorted(map(str, obj))[:10]}){hint}")
    if not isinstance(sd, Mapping) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(p)!r}: the {container or 'top-level'} entry is not a state dict of tensors")
    check_finite(sd, repr(str(p)))
    return dict(sd)


def _squeeze_equal(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


def convert_state_dict(official: Mapping[str, Tensor], key_map: OfficialKeyMap, model: nn.Module, backbone: str,
                       origin: str = "checkpoint") -> dict[str, Tensor]:
    """Map an official state dict onto ``model``'s keys, consuming every official key.

    Tensors keep their dtype; singleton dimensions are reshaped to ours (e.g. a ``(1, C, 1, 1)`` bias
    to ``(C,)``).

    Raises:
        ConversionError: missing or unexpected official keys, shape mismatches, or buffers whose values
            differ from what our constructor computes - all listed at once, with the backbone the
            file looks like.
    """
    ours = model.state_dict()
    expected = key_map.official_keys()
    missing = sorted(expected - set(official))
    unexpected = sorted(set(official) - expected)
    mismatched: list[tuple[str, tuple, tuple]] = []
    bad_buffers: list[str] = []
    out: dict[str, Tensor] = {}

    for off_key, our_key in key_map.rename.items():
        if off_key not in official:
            continue
        value, target = official[off_key], ours[our_key]
        if tuple(value.shape) != tuple(target.shape):
            if _squeeze_equal(tuple(value.shape), tuple(target.shape)):
                value = value.reshape(target.shape)
            else:
                mismatched.append((off_key, tuple(value.shape), tuple(target.shape)))
                continue
        out[our_key] = value
    for off_key, parts in key_map.split.items():
        if off_key not in official:
            continue
        value = official[off_key]
        for our_key, dim, start, stop in parts:
            target = ours[our_key]
            if value.ndim <= dim or value.shape[dim] < stop:
                mismatched.append((off_key, tuple(value.shape), f"at least {stop} along dim {dim}"))
                break
            piece = value.narrow(dim, start, stop - start)
            if tuple(piece.shape) != tuple(target.shape):
                mismatched.append((off_key, tuple(value.shape), tuple(target.shape)))
                break
            out[our_key] = piece.clone()
    for off_key, want in key_map.buffers.items():
        if off_key not in official:
            continue
        got = official[off_key]
        if tuple(got.shape) != tuple(want.shape):
            mismatched.append((off_key, tuple(got.shape), tuple(want.shape)))
        elif not torch.equal(got.to(want.dtype), want):
            bad_buffers.append(off_key)

    unfilled = sorted(k for k in ours if k not in out)
    if missing or unexpected or mismatched or bad_buffers or (unfilled and not missing):
        looks = guess_official_backbone(official.keys())
        looks_txt = (f"it looks like a {looks!r} checkpoint" if looks and looks != backbone else
                     "its keys match no known official backbone" if looks is None else f"it looks like {looks!r}")
        problems = describe_key_problems(missing, unexpected, mismatched)
        if bad_buffers:
            problems += ("; " if problems else "") + f"buffers with unexpected values: {', '.join(bad_buffers[:8])}"
        if unfilled and not missing:
            problems += ("; " if problems else "") + f"plugtalk keys left empty: {', '.join(unfilled[:8])}"
        raise ConversionError(f"{origin} does not fit the official {backbone!r} layout ({looks_txt}): {problems}",
                              backbone=backbone, looks_like=looks, missing=missing, unexpected=unexpected,
                              mismatched=mismatched)
    return out
