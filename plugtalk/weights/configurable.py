"""A module built from a dataclass config and saved as safetensors + config (HF diffusers' idea)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .plugtalk_format import load_safetensors, save_safetensors
from ..errors import CheckpointError
from .detect import describe_key_problems

__all__ = ["ConfigurableModule", "ConfigDict", "load_state_dict_checked", "build_from_file", "describe_key_problems",
           "config_from_dict"]


def config_from_dict(cls: type, values: dict[str, Any]):
    """Instantiate dataclass ``cls`` from ``values``, rejecting unknown names with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown option(s) {unknown}; valid: {sorted(names)}")
    return cls(**values)


class ConfigDict:
    """Mixin for config dataclasses: ``to_dict()`` / ``from_dict()`` (unknown names rejected)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        return config_from_dict(cls, values)


def _check_fits(own: dict[str, Tensor], tensors: dict[str, Tensor], origin: str, what: str) -> None:
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = [(k, tuple(tensors[k].shape), tuple(own[k].shape)) for k in own
                  if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{origin}: weights do not fit {what}: "
                              + describe_key_problems(missing, unexpected, mismatched))


def load_state_dict_checked(model: nn.Module, tensors: dict[str, Tensor], origin: str) -> None:
    """``load_state_dict(strict=True)`` with one clear error listing missing/unexpected/mismatched keys."""
    _check_fits(model.state_dict(), tensors, origin, type(model).__name__)
    model.load_state_dict(tensors, strict=True)


def build_from_file(cls: type, values: Any, tensors: dict[str, Tensor], origin: str) -> nn.Module:
    """``cls(cls.config_from(values))`` for a file's config, built only once the config is known to describe the
    file's tensors: the module is first laid out on the ``meta`` device (no memory) and its parameter names
    and shapes compared with ``tensors`` (read from the safetensors file).  A config that claims a huge model
    (``channel_base=1e8`` in an 870 KB file once allocated 22 GB) is refused before anything is allocated.

    Raises:
        CheckpointError: a config that is not ``cls``'s (unknown options: e.g. metadata naming one backbone and
            holding another's config), cannot be built, or whose shapes are not the file's.
    """
    try:
        config = cls.config_from(values if isinstance(values, dict) else {})
        if not isinstance(values, dict):
            raise TypeError(f"expected a mapping, got {type(values).__name__}")
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{origin}: its config does not describe a {cls.__name__} ({e})") from None
    try:
        with torch.device("meta"):
            skeleton = cls(config)
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, AssertionError) as e:
        raise CheckpointError(f"{origin}: cannot build {cls.__name__} from its config ({e})") from None
    except (RuntimeError, NotImplementedError):  # an operation without a meta kernel: checked after building
        skeleton = None
    if skeleton is not None:
        _check_fits(skeleton.state_dict(), tensors, origin, f"the {cls.__name__} its config describes")
    return cls(config)


class ConfigurableModule(nn.Module):
    """Base for modules built from one dataclass config.

    Subclasses set ``config_class`` (a :class:`ConfigDict` dataclass) and ``kind`` (e.g. ``"emi"``) and take the config as the only
    constructor argument.  :meth:`save_pretrained` writes ``{kind, name, config}`` into the safetensors
    metadata; :meth:`from_pretrained` rebuilds the module from it.
    """

    config_class: ClassVar[type]
    kind: ClassVar[str] = "module"
    name: ClassVar[str] = ""

    def __init__(self, config: Any):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def config_from(cls, values: dict[str, Any]):
        return cls.config_class.from_dict(values)

    def save_pretrained(self, path: str | os.PathLike, extra_metadata: dict[str, Any] | None = None) -> Path:
        """Write weights + config to one safetensors file, atomically."""
        meta = {"kind": self.kind, "name": self.name, "config": self.config_dict(), **(extra_metadata or {})}
        return save_safetensors(self.state_dict(), path, meta)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu"):
        """Rebuild from a :meth:`save_pretrained` file.

        Raises:
            CheckpointError: unreadable file, a file of another kind/name, or weights that do not fit.
        """
        tensors, meta = load_safetensors(path, device)
        if meta.get("kind") != cls.kind or (cls.name and meta.get("name") != cls.name):
            raise CheckpointError(f"{str(path)!r} holds a {meta.get('kind', 'unknown')} {meta.get('name', '')!r} "
                                  f"file, not a {cls.kind} {cls.name!r}")
        model = build_from_file(cls, meta.get("config"), tensors, repr(str(path)))
        load_state_dict_checked(model, tensors, repr(str(path)))
        return model.to(device)
