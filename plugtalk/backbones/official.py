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

import dataclasses
from typing import Callable, Iterable, Mapping

import torch
from torch import Tensor, nn

from ..errors import ConversionError
from ..weights.detect import SAFE_GLOBALS, describe_key_problems
from ..weights.detect import read_torch_checkpoint as read_official_checkpoint  # the reader, by its old name

__all__ = ["OfficialKeyMap", "read_official_checkpoint", "convert_state_dict", "SAFE_GLOBALS"]

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


def _squeeze_equal(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


def convert_state_dict(official: Mapping[str, Tensor], key_map: OfficialKeyMap, model: nn.Module, backbone: str,
                       origin: str = "checkpoint", guess: Callable[[Iterable[str]], str | None] | None = None
                       ) -> dict[str, Tensor]:
    """Map an official state dict onto ``model``'s keys, consuming every official key.

    Tensors keep their dtype; singleton dimensions are reshaped to ours (e.g. a ``(1, C, 1, 1)`` bias
    to ``(C,)``).

    Raises:
        ConversionError: missing or unexpected official keys, shape mismatches, or buffers whose values
            differ from what our constructor computes - all listed at once, with the backbone the
            file looks like (``guess``: ``keys -> name``, the registry's ``guess_official_backbone``).
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
        looks = guess(official.keys()) if guess is not None else None
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
