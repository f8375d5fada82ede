"""Driving controls: non-video inputs an adapter reads itself (EDTalk's audio and expression weights, GoHD's
coefficients and gaze, or a new backbone's own).

An adapter declares its controls in ``Adapter.controls``; :func:`plugtalk.animate.animate` (and through it the
CLI's ``--control NAME=VALUE`` and the UI) reads each given one with :meth:`Control.read` into a
:class:`ControlStream`, which yields the per-frame keyword arguments of the adapter's ``control_codes`` /
``motion`` for every batch of output frames.  Nothing outside the adapter's own file knows a control by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["Control", "ControlContext", "ControlStream", "constant_stream", "sequence_stream", "parse_assignments"]


@dataclasses.dataclass(frozen=True)
class ControlContext:
    """What a control's reader may use besides its own value.

    Attributes:
        adapter: the model's adapter (its backbone's config, e.g. EDTalk's ``expression_dim``).
        device, dtype: where the per-frame tensors go.
        fps: the requested output frame rate (``None``: not given).
        max_frames: the output frame cap (``None``: none).
        companion: the companion model the control declared (``Control.companion``), or ``None``.
        values: every control value of the request (for a control that reads a partner's, as GoHD's
            coefficients read the gaze).
    """

    adapter: nn.Module
    device: torch.device
    dtype: torch.dtype
    fps: float | None = None
    max_frames: int | None = None
    companion: nn.Module | None = None
    values: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ControlStream:
    """A control read for one animation.

    Attributes:
        batch: ``frames (n,) int64 output frame indices -> {keyword: tensor (n, ...)}`` for the adapter.
        length: frames it lasts (``None``: any length, e.g. constant weights).
        fps: the frame rate it was read at, which the output then uses unless asked otherwise (``None``: any).
        description: what drives which part, for the result (``"audio speech.wav"``).
    """

    batch: Callable[[Tensor], dict[str, Any]]
    length: int | None = None
    fps: float | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Control:
    """One driving control of an adapter.

    Attributes:
        name: its name in ``animate(controls={name: value})``, ``--control name=VALUE`` and the UI.
        help: one line for users: what it is and the value's format.
        read: ``(value, ControlContext) -> ControlStream``; raises ``InputError`` for a bad value.
        value: how the value is given: ``"file"`` (a path), ``"text"`` (numbers as text) or ``"file-or-text"``.
        replaces: the adapter driver it stands in for (EDTalk's audio: ``"mouth"``), or ``None``.
        companion: registry name of a model it needs (EDTalk's audio: ``"edtalk-audio"``), or ``None``.
        with_control: a control it only modifies and that reads it (GoHD's gaze: ``"coefficients"``); such
            a control is not read on its own.
        from_sound: the request's sound file feeds it when it is not given (EDTalk's audio drives the mouth).
    """

    name: str
    help: str
    read: Callable[[Any, ControlContext], ControlStream | None]
    value: str = "file"
    replaces: str | None = None
    companion: str | None = None
    with_control: str | None = None
    from_sound: bool = False

    def __post_init__(self):
        if self.value not in ("file", "text", "file-or-text"):
            raise ValueError(f"control {self.name!r}: value must be 'file', 'text' or 'file-or-text'")


def constant_stream(values: Mapping[str, Tensor], description: str) -> ControlStream:
    """A control that is the same for every frame: each ``(1, ...)`` tensor is expanded to the batch."""
    return ControlStream(lambda frames: {k: v.expand(int(frames.shape[0]), *v.shape[1:]) for k, v in values.items()},
                         None, None, description)


def sequence_stream(keyword: str, sequence: Tensor, description: str, fps: float | None = None) -> ControlStream:
    """A per-frame control ``sequence (T, ...)``: frame ``i`` of the output gets ``sequence[i]``."""
    if sequence.ndim < 1 or sequence.shape[0] < 1:
        raise InputError(f"{description}: the sequence has no frames")
    return ControlStream(lambda frames: {keyword: sequence[frames.to(sequence.device)]}, int(sequence.shape[0]), fps,
                         description)


def parse_assignments(items, what: str) -> dict[str, str]:
    """``["a=1", "b=x.npy"]`` (or one text, a pair per line) -> ``{"a": "1", "b": "x.npy"}``: controls and
    companion weights as a CLI (``--control NAME=VALUE``) or the UI's text box gives them.

    Raises:
        InputError: an item without ``NAME=``, an empty value, or a name given twice.
    """
    if isinstance(items, str):
        items = [line for line in items.splitlines() if line.strip()]
    out: dict[str, str] = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise InputError(f"{what} {item!r}: expected NAME=VALUE")
        if name in out:
            raise InputError(f"{what} {name} is given twice")
        out[name] = value
    return out
