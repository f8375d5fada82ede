"""Turn whatever weights a user has into a ready animator (one code path for every backbone).

:func:`load_animator` accepts, by file content:

* a plugtalk **retrofit** file (``Retrofitted.save_pretrained``: backbone + EMI and/or EDI);
* a plugtalk **backbone** file (``Backbone.save_pretrained`` or ``plugtalk convert``);
* an **official** ``torch.save`` checkpoint of a registered animator (``.pt``/``.pth``, read with
  ``torch.load(weights_only=True)``; the backbone name must be given);
* nothing: the embedded default model (:mod:`plugtalk.default_model`), else random weights with a warning.

Every result is a :class:`~plugtalk.retrofitting.Retrofitted` in eval mode; a plain backbone is
``retrofit(backbone, emi=None, edi=None)``, so callers never branch on retrofitted or not.

:func:`open_weights` is the one place a weights file is opened and classified (animate, probe and
train all go through it).  Which backbones are animators, and their adapter options (DPE's mode),
come from the backbone registry entries.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import torch

from ..backbones import animator_backbones
from ..errors import CheckpointError, InputError

if TYPE_CHECKING:
    from ..retrofitting import Retrofitted

__all__ = ["LoadedAnimator", "RandomWeightsWarning", "WeightsFile", "open_weights", "load_animator",
           "load_audio_model", "load_companion", "companion_weights", "CompanionLoader"]


class RandomWeightsWarning(UserWarning):
    """A model runs with random weights: its output shows the mechanics, not a real animation."""


@dataclasses.dataclass
class LoadedAnimator:
    """A ready model and a one-line description of where its weights came from."""

    model: "Retrofitted"
    source: str
    random_weights: bool = False

    @property
    def backbone(self) -> str:
        return self.model.backbone.name

    @property
    def variant(self) -> str:
        m = self.model
        return {(False, False): "base", (True, False): "+EMI", (False, True): "+EDI", (True, True): "+EMI+EDI"}[
            (m.emi is not None, m.edi is not None)]


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """An opened weights file: what it holds, read from its metadata without loading the weights.

    Attributes:
        path: the file.
        kind: ``"retrofit"`` (backbone + EMI/EDI), ``"backbone"`` (plugtalk safetensors) or ``"official"``
            (a ``torch.save`` checkpoint, read with ``weights_only=True`` when loaded).
        backbone: the backbone a plugtalk file holds; ``None`` for official files (their keys say it).
        metadata: the safetensors metadata (empty for official files).
    """

    path: Path
    kind: str
    backbone: str | None
    metadata: dict

    def check_backbone(self, name: str | None, option: str = "--backbone") -> None:
        """Raise :class:`CheckpointError` if this plugtalk file holds another backbone than ``name``."""
        if name is not None and self.backbone is not None and self.backbone != name:
            raise CheckpointError(f"{str(self.path)!r} holds a {self.backbone} model, not {name} (drop {option} "
                                  "or give a matching checkpoint)")

    def load_backbone(self, name: str | None = None, device: str | torch.device = "cpu", **overrides):
        """The backbone (eval mode) of a ``backbone`` or ``official`` file; ``name`` is required for official
        files (``overrides`` change their configuration) and checked against plugtalk files."""
        from .. import backbones as B

        if self.kind == "retrofit":
            raise CheckpointError(f"{str(self.path)!r} is a retrofit file: load it with load_retrofitted()")
        if self.kind == "backbone":
            self.check_backbone(name)
            return B.load(self.path, device)
        if name is None:
            raise InputError(f"{self.path.name!r} looks like an official torch checkpoint: say which backbone it is "
                             f"with --backbone ({', '.join(animator_backbones())})")
        return B.load_official(name, self.path, device, **overrides)

    def load_retrofitted(self, device: str | torch.device = "cpu") -> "Retrofitted":
        from ..retrofitting import load_retrofitted

        if self.kind != "retrofit":
            raise CheckpointError(f"{str(self.path)!r} is not a plugtalk retrofit file (it is a {self.kind} file)")
        return load_retrofitted(self.path, device)


def open_weights(path: str | os.PathLike) -> WeightsFile:
    """Classify a weights file by content (a safetensors file works under any name: its metadata says what
    it holds; anything else is an official checkpoint).

    Raises:
        CheckpointError: missing file, a file of no weights format (text, random bytes, empty), or a
            safetensors file that is neither a plugtalk retrofit nor backbone file.
    """
    from .plugtalk_format import read_metadata
    from .detect import NOT_WEIGHTS, require_weights_file, sniff_format

    p = require_weights_file(path)
    fmt = sniff_format(p)
    if fmt == "unknown":
        raise CheckpointError(f"{str(p)!r} is {NOT_WEIGHTS}")
    if fmt != "safetensors":
        return WeightsFile(p, "official", None, {})
    meta = read_metadata(p)
    kind = meta.get("kind")
    if kind not in ("retrofit", "backbone"):
        raise CheckpointError(f"{str(p)!r} is a safetensors file but not a plugtalk retrofit or backbone file "
                              f"(kind={kind!r})")
    return WeightsFile(p, kind, meta.get("backbone") if kind == "retrofit" else meta.get("name"), meta)


def _adapter_options(name: str, mode: str | None) -> dict:
    """Adapter options for a plain backbone: DPE-like backbones (an adapter ``mode`` option) default to
    ``"expression"``; ``mode`` for a backbone without that option is an error."""
    from ..backbones import backbone_entry

    if "mode" in backbone_entry(name).adapter_options:
        return {"mode": mode or "expression"}
    if mode is not None:
        raise InputError(f"--mode is DPE's option; this model is {name}")
    return {}


def load_animator(checkpoint: str | os.PathLike | None = None, backbone: str | None = None, *,
                  mode: str | None = None, device: str | torch.device = "cpu",
                  default_backbone: str = "lia") -> LoadedAnimator:
    """Load an animator from any supported weights file (see the module docstring).

    Args:
        checkpoint: the weights file, or ``None`` for the embedded default model.
        backbone: a registered animator (:func:`animator_backbones`); required for official ``.pt`` files,
            checked against plugtalk files, and picks the random-weight model when there are no weights.
        mode: DPE's ``"expression"`` (default) or ``"pose"`` (a retrofit file keeps the mode it was
            trained in; asking for another is an error).
        device: where to put the model.
        default_backbone: backbone of the random-weight fallback when ``backbone`` is ``None``.

    Returns:
        :class:`LoadedAnimator` (model in eval mode).  Falling back to random weights issues a
        :class:`RandomWeightsWarning`.

    Raises:
        CheckpointError: missing/unreadable/unsafe file, or a file of another backbone than ``backbone``.
        ConversionError: an official file whose keys do not fit ``backbone``.
        InputError: unknown backbone or mode, or ``mode`` for a non-DPE model.
    """
    from .. import backbones as B
    from ..default_model import load_default_model
    from ..retrofitting import retrofit

    animators = animator_backbones()
    if backbone is not None and backbone not in animators:
        raise InputError(f"unknown backbone {backbone!r}; animate works with {', '.join(animators)}")
    if mode is not None and mode not in ("expression", "pose"):
        raise InputError(f"DPE mode must be 'expression' or 'pose', got {mode!r}")

    def plain(model, source: str, random_weights: bool = False) -> LoadedAnimator:
        opts = _adapter_options(model.name, mode)
        return LoadedAnimator(retrofit(model, emi=None, edi=None, **opts).to(device).eval(), source, random_weights)

    if checkpoint is None:
        default = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the missing default is reported below, once
            default = load_default_model(device, strict=False)
        if default is not None and backbone in (None, default.backbone.name):
            loaded = LoadedAnimator(default, "embedded default model")
            if mode is not None and getattr(default.adapter, "mode", None) != mode:
                raise InputError(f"the default model is not a DPE {mode} model")
            return loaded
        name = backbone or default_backbone
        why = ("the embedded default model is a " + default.backbone.name) if default is not None else \
            "no embedded default model in this installation"
        warnings.warn(f"RANDOM WEIGHTS: {why} and no --checkpoint was given, so {name} runs with random weights; "
                      "the output only shows the mechanics. Pass --checkpoint with trained weights.",
                      RandomWeightsWarning, stacklevel=2)
        return plain(B.create(name), f"random {name} weights", random_weights=True)

    weights = open_weights(checkpoint)
    path = weights.path
    weights.check_backbone(backbone)
    if weights.kind == "retrofit":
        model = weights.load_retrofitted(device)
        stored = getattr(model.adapter, "mode", None)
        if mode is not None and stored != mode:
            raise InputError(f"{path.name!r} is a retrofitted {model.backbone.name}"
                             + (f" in {stored} mode" if stored else "") + f"; it cannot run in {mode} mode")
        return LoadedAnimator(model, f"plugtalk retrofit file {path.name}")
    if weights.kind == "backbone":
        if weights.backbone not in animators:
            raise CheckpointError(f"{path.name!r} holds the {weights.backbone} model, not an animator "
                                  f"({', '.join(animators)})")
        return plain(weights.load_backbone(backbone, device), f"plugtalk backbone file {path.name}")
    return plain(weights.load_backbone(backbone, device), f"official {backbone} checkpoint {path.name}")


def load_audio_model(checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """EDTalk's audio-to-mouth model (:class:`~plugtalk.backbones.EDTalkAudio`) from the official
    ``Audio2Lip.pt`` or a plugtalk ``edtalk-audio`` file; ``None`` gives random weights with a
    :class:`RandomWeightsWarning`.

    Returns:
        ``(model in eval mode, description)``.

    Raises:
        CheckpointError / ConversionError: unreadable file, or a file of another model.
    """
    from .. import backbones as B

    if checkpoint is None:
        warnings.warn("RANDOM WEIGHTS: no --audio-checkpoint was given, so the audio-to-mouth model has random "
                      "weights and the mouth will not follow the speech. Pass EDTalk's Audio2Lip.pt.",
                      RandomWeightsWarning, stacklevel=2)
        return B.create("edtalk-audio").to(device).eval(), "random edtalk-audio weights"
    weights = open_weights(checkpoint)
    path = weights.path
    if weights.kind == "official":
        return weights.load_backbone("edtalk-audio", device), f"official Audio2Lip checkpoint {path.name}"
    if weights.kind != "backbone" or weights.backbone != "edtalk-audio":
        raise CheckpointError(f"{path.name!r} is not an EDTalk audio model (kind={weights.kind!r}, "
                              f"name={weights.backbone!r})")
    return weights.load_backbone("edtalk-audio", device), f"plugtalk edtalk-audio file {path.name}"


def load_companion(name: str, checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """A control's companion model (``Control.companion``, a registry name: EDTalk's audio control needs
    ``"edtalk-audio"``) from its official checkpoint or a plugtalk backbone file; ``None`` gives random weights
    with a :class:`RandomWeightsWarning`.

    Returns:
        ``(model in eval mode, description)``.

    Raises:
        InputError: unknown name.  CheckpointError / ConversionError: unreadable file, or a file of another model.
    """
    from .. import backbones as B

    B.backbone_entry(name)
    if checkpoint is None:
        warnings.warn(f"RANDOM WEIGHTS: no weights were given for the companion model {name!r} (--companion "
                      f"{name}=FILE), so it has random weights and its control will not do what it says.",
                      RandomWeightsWarning, stacklevel=2)
        return B.create(name).to(device).eval(), f"random {name} weights"
    weights = open_weights(checkpoint)
    path = weights.path
    if weights.kind == "official":
        return weights.load_backbone(name, device), f"official {name} checkpoint {path.name}"
    if weights.kind != "backbone" or weights.backbone != name:
        raise CheckpointError(f"{path.name!r} is not a {name} model (kind={weights.kind!r}, name={weights.backbone!r})")
    return weights.load_backbone(name, device), f"plugtalk {name} file {path.name}"


def companion_weights(assignments, audio_checkpoint: str | os.PathLike | None = None,
                      what: str = "--companion") -> dict[str, str]:
    """The companion weights of a request, registry name -> file: ``NAME=FILE`` ``assignments`` (a list, one
    text with a pair per line, as :func:`~plugtalk.adapters.controls.parse_assignments` reads them, or a
    mapping; empty values are left out) and the
    audio-to-mouth shorthand ``audio_checkpoint`` (``edtalk-audio``), as the CLI and the UI take them.

    Raises:
        InputError: a malformed assignment, or the audio-to-mouth model given both ways.
    """
    from ..adapters.controls import parse_assignments

    if isinstance(assignments, Mapping):
        weights = {k: str(v).strip() for k, v in assignments.items() if v is not None and str(v).strip()}
    else:
        weights = parse_assignments(assignments, what)
    if audio_checkpoint is not None and str(audio_checkpoint).strip():
        if "edtalk-audio" in weights:
            raise InputError(f"give the audio-to-mouth model once: the audio checkpoint or {what} edtalk-audio=FILE")
        weights["edtalk-audio"] = str(audio_checkpoint).strip()
    return weights


class CompanionLoader:
    """The companion models a request's controls ask for (``animate(companions=loader)``), loaded on first use
    from ``weights`` (registry name -> file) with :func:`load_companion`, else with random weights and a warning;
    ``described`` says what was loaded."""

    def __init__(self, weights: dict[str, Any] | None = None, device: str | torch.device = "cpu", hint: str = ""):
        self.weights, self.device, self.described, self.hint = dict(weights or {}), device, {}, hint
        self._models: dict[str, torch.nn.Module] = {}

    def __call__(self, name: str) -> torch.nn.Module:
        if name not in self._models:
            self._models[name], self.described[name] = load_companion(name, self.weights.get(name), self.device)
        return self._models[name]

    def check_used(self) -> None:
        """Called by :func:`~plugtalk.animate.animate` once the controls are read, before any rendering.

        Raises:
            InputError: weights were given for a companion that no control of the request used.
        """
        unused = sorted(set(self.weights) - set(self.described))
        if unused:
            raise InputError(f"no control of this request uses the companion model(s) {', '.join(unused)}"
                             + (f" ({self.hint})" if self.hint else ""))
