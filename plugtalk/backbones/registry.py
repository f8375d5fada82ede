"""Backbone registry: ``create``, ``load_official``, ``load``, ``convert`` by name (like timm's model registry)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..checkpoint import read_metadata
from ..errors import CheckpointError, InputError
from .base import Backbone
from .official import OfficialKeyMap, convert_state_dict, read_official_checkpoint

__all__ = ["BackboneEntry", "register_backbone", "list_backbones", "get_backbone_class", "create", "load_official",
           "load", "convert"]


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
    cls: type[Backbone]
    official_container: str                          #: top-level key of the official torch.save dict
    official_key_map: Callable[[Any], OfficialKeyMap]
    description: str


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(cls: type[Backbone], official_container: str = "gen", description: str = "") -> type[Backbone]:
    """Register a :class:`Backbone` subclass under ``cls.name`` (its ``official_key_map`` staticmethod
    describes the official checkpoint layout)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    _REGISTRY[cls.name] = BackboneEntry(cls, official_container, cls.official_key_map,
                                        description or (cls.__doc__ or "").strip().splitlines()[0])
    return cls


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def _entry(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown backbone {name!r}; available: {', '.join(list_backbones())}") from None


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
    official = read_official_checkpoint(path, entry.official_container)
    model = create(name, **overrides)
    ours = convert_state_dict(official, entry.official_key_map(model.config), model, name, origin=repr(str(path)))
    model.load_state_dict(ours, strict=True)
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval()


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Backbone:
    """Load a plugtalk safetensors backbone file (any registered backbone, picked from its metadata)."""
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
