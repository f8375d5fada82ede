"""Backbone registry: ``create``, ``load_official``, ``load``, ``convert`` by name (like timm's model registry).

A backbone's :class:`BackboneEntry` is the one place the rest of plugtalk learns about it: its adapter,
its official checkpoint layout (container key, signature keys, key map), whether it is an animator
and its default motion mode; what drives it (driver videos, controls) its adapter declares.  animate,
probe, bench, train and loading ask the entry and the adapter, never a backbone name.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..weights.plugtalk_format import read_metadata
from ..errors import CheckpointError, InputError
from .base import Backbone
from ..weights.detect import GENERIC_CONTAINERS, read_torch_checkpoint
from .official import OfficialKeyMap, convert_state_dict

__all__ = ["BackboneEntry", "register_backbone", "unregister_backbone", "list_backbones", "animator_backbones", "backbone_entry",
           "get_backbone_class", "guess_official_backbone", "official_containers", "read_official", "create", "load_official", "load", "convert",
           "MOTION_MODES"]

#: Motion modes: ``relative`` (``z_s + z_d - z_start``, LIA's demo) or ``absolute``.
MOTION_MODES = ("relative", "absolute")


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
    """Everything plugtalk needs to know about one backbone.

    Attributes:
        cls: the :class:`Backbone` subclass.
        official_container: top-level key of the official ``torch.save`` dict (``'gen'``, ``'gen_pose'``, ...).
        official_key_map: ``config -> OfficialKeyMap`` (the declarative converter).
        signature: official keys that all appear in this backbone's official checkpoints; when several
            backbones match a file, the one with the longest matching signature wins.
        description: one line.
        adapter: ``"module:Class"`` of its :class:`~plugtalk.adapters.Adapter` (imported on first use:
            adapters import backbones); ``None``: not retrofittable.
        animator: whether ``plugtalk animate`` / ``probe`` / ``bench`` drive it (EDTalk's audio model: no).
        motion_mode: its default motion mode (see :data:`MOTION_MODES`).
        adapter_options: names of the adapter's constructor options besides ``identity_level`` (DPE: mode).
    """

    cls: type[Backbone]
    official_container: str
    official_key_map: Callable[[Any], OfficialKeyMap]
    signature: tuple[str, ...]
    description: str
    adapter: str | None = None
    animator: bool = True
    motion_mode: str = "absolute"
    adapter_options: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def controls(self) -> tuple[str, ...]:
        """What drives it, from its adapter's declaration: ``"driving"`` (a driving video fills its drivers),
        ``"banks"`` (several drivers, one video each), then the names of the adapter's controls."""
        if self.adapter is None:
            return ()
        a = self.adapter_class()
        return (*(("driving",) if a.driving_fills else ()), *(("banks",) if len(a.drivers) > 1 else ()),
                *(c.name for c in a.controls))

    def adapter_class(self) -> type:
        """The adapter class (``TypeError`` for a backbone that has none)."""
        if self.adapter is None:
            raise TypeError(f"the {self.name} backbone has no adapter (it is not an animator)")
        module, _, attr = self.adapter.partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(cls: type[Backbone], official_container: str = "gen", *, signature: tuple[str, ...] = (),
                      adapter: str | None = None, animator: bool = True, motion_mode: str = "absolute", adapter_options: tuple[str, ...] = (),
                      description: str = "") -> type[Backbone]:
    """Register a :class:`Backbone` subclass under ``cls.name`` (its ``official_key_map`` staticmethod
    describes the official checkpoint layout); the keyword arguments fill its :class:`BackboneEntry`."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if motion_mode not in MOTION_MODES:
        raise ValueError(f"motion_mode must be one of {MOTION_MODES}, got {motion_mode!r}")
    if animator and adapter is None:
        raise ValueError(f"animator {cls.name!r} needs an adapter")
    _REGISTRY[cls.name] = BackboneEntry(cls, official_container, cls.official_key_map, tuple(signature),
                                        description or (cls.__doc__ or "").strip().splitlines()[0], adapter,
                                        animator, motion_mode, tuple(adapter_options))
    return cls


def unregister_backbone(name: str) -> None:
    """Remove ``name`` from the registry (a backbone registered for a while, e.g. by a test)."""
    _REGISTRY.pop(name, None)


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def animator_backbones() -> tuple[str, ...]:
    """Names of the registered animators (what animate / probe / bench / train drive), in registration order."""
    return tuple(n for n, e in _REGISTRY.items() if e.animator)


def backbone_entry(name: str) -> BackboneEntry:
    """The :class:`BackboneEntry` of ``name``.  Raises ``ValueError`` naming the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}") from None


_entry = backbone_entry


def guess_official_backbone(keys) -> str | None:
    """Name of the registered backbone whose signature keys all appear in ``keys`` (the longest such
    signature wins: a GoHD file also holds LIA's keys), ``"plugtalk"`` for our own key names, else ``None``."""
    keys = set(keys)
    if any(k.startswith(("encoder.stem.", "generator.levels.")) for k in keys):
        return "plugtalk"
    best = None
    for name, e in _REGISTRY.items():
        if e.signature and all(k in keys for k in e.signature):
            if best is None or len(e.signature) > len(_REGISTRY[best].signature):
                best = name
    return best


def official_containers() -> tuple[str, ...]:
    """The container keys of the registered backbones' official files, then the generic ``state_dict``, ``model``."""
    return tuple(dict.fromkeys([e.official_container for e in _REGISTRY.values()] + list(GENERIC_CONTAINERS)))


def read_official(path: str | os.PathLike, container: str | None = None) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint (:func:`~plugtalk.weights.detect.read_torch_checkpoint` with the
    registered backbones' containers; errors name the backbone the file looks like)."""
    return read_torch_checkpoint(path, container, containers=official_containers(), guess=guess_official_backbone)


def get_backbone_class(name: str) -> type[Backbone]:
    return _entry(name).cls


def create(name: str, **overrides: Any) -> Backbone:
    """Build backbone ``name`` with its official 256 px configuration, changed by ``overrides``
    (e.g. ``create("lia", size=64, channel_base=1024, channel_max=64)`` for a tiny model).
    Weights are randomly initialised."""
    entry = _entry(name)
    return entry.cls(entry.cls.config_from(overrides))


def load_official(name: str, path: str | os.PathLike, device: str | torch.device = "cpu",
                  dtype: torch.dtype | None = None, **overrides: Any) -> Backbone:
    """Load an official ``torch.save`` checkpoint of backbone ``name`` (read with ``weights_only=True``).

    Every official key must be consumed by the backbone's converter.  Returns the model in eval mode.

    Raises:
        CheckpointError: unreadable/unsafe file.
        ConversionError: keys/shapes that do not fit, naming the backbone the file looks like.
    """
    entry = _entry(name)
    official = read_official(path, entry.official_container)
    model = create(name, **overrides)
    ours = convert_state_dict(official, entry.official_key_map(model.config), model, name, origin=repr(str(path)),
                              guess=guess_official_backbone)
    model.load_state_dict(ours, strict=True)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Backbone:
    """Load a plugtalk safetensors backbone file (any registered backbone, picked from its metadata).

    Raises:
        CheckpointError: not a plugtalk backbone file; an official torch checkpoint is sent to
            :func:`load_official` (it needs the backbone's name).
    """
    from ..weights.detect import require_weights_file, sniff_format

    if sniff_format(require_weights_file(path)) in ("torch-zip", "torch-pickle"):
        raise CheckpointError(f"{str(path)!r} is an official torch checkpoint, not a plugtalk file: load it with "
                              "plugtalk.backbones.load_official(NAME, path) (NAME: lia, edtalk, ...), or convert it "
                              "once with plugtalk convert")
    meta = read_metadata(path)
    name = meta.get("name")
    if meta.get("kind") != "backbone" or name not in _REGISTRY:
        raise CheckpointError(f"{str(path)!r} is not a plugtalk backbone file (metadata: kind={meta.get('kind')!r}, "
                              f"name={name!r}); official .pt files go through load_official()")
    return _REGISTRY[name].cls.from_pretrained(path, device).eval()


def convert(name: str, official_path: str | os.PathLike, out_path: str | os.PathLike, **overrides: Any) -> Path:
    """Convert an official checkpoint to plugtalk's safetensors format (weights + config), atomically."""
    model = load_official(name, official_path, **overrides)
    return model.save_pretrained(out_path, {"converted_from": os.path.basename(str(official_path))})
