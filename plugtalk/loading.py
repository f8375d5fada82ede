"""Turn whatever weights a user has into a ready animator (one code path for every backbone).

:func:`load_animator` accepts, by file content:

* a plugtalk **retrofit** file (``Retrofitted.save_pretrained``: backbone + EMI and/or EDI);
* a plugtalk **backbone** file (``Backbone.save_pretrained`` or ``plugtalk convert``);
* an **official** ``torch.save`` checkpoint of LIA / EDTalk / DPE (``.pt``/``.pth``, read with
  ``torch.load(weights_only=True)``; the backbone name must be given);
* nothing: the embedded default model (:mod:`plugtalk.pretrained`), else random weights with a warning.

Every result is a :class:`~plugtalk.retrofitting.Retrofitted` in eval mode; a plain backbone is
``retrofit(backbone, emi=None, edi=None)``, so callers never branch on retrofitted or not.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import CheckpointError, InputError

if TYPE_CHECKING:
    from .retrofitting import Retrofitted

__all__ = ["LoadedAnimator", "RandomWeightsWarning", "load_animator", "load_audio_model", "ANIMATOR_BACKBONES"]

#: Backbones ``plugtalk animate`` drives (``edtalk-audio`` is EDTalk's audio-to-mouth model, not an animator).
ANIMATOR_BACKBONES = ("lia", "edtalk", "dpe")


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


def _kind(path: Path) -> tuple[str, dict]:
    """``("retrofit" | "backbone" | "official", metadata)`` of a weights file, judged by its content (a
    safetensors file works under any name)."""
    from .checkpoint import read_metadata
    from .weights_file import sniff_format

    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if sniff_format(path) == "safetensors":
        meta = read_metadata(path)
        kind = meta.get("kind")
        if kind not in ("retrofit", "backbone"):
            raise CheckpointError(f"{str(path)!r} is a safetensors file but not a plugtalk retrofit or backbone file "
                                  f"(kind={kind!r})")
        return kind, meta
    return "official", {}


def load_animator(checkpoint: str | os.PathLike | None = None, backbone: str | None = None, *,
                  mode: str | None = None, device: str | torch.device = "cpu",
                  default_backbone: str = "lia") -> LoadedAnimator:
    """Load an animator from any supported weights file (see the module docstring).

    Args:
        checkpoint: the weights file, or ``None`` for the embedded default model.
        backbone: ``"lia" | "edtalk" | "dpe"``; required for official ``.pt`` files, checked against
            plugtalk files, and picks the random-weight model when there are no weights.
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
    from . import backbones as B
    from .pretrained import load_default_model
    from .retrofitting import load_retrofitted, retrofit

    if backbone is not None and backbone not in ANIMATOR_BACKBONES:
        raise InputError(f"unknown backbone {backbone!r}; animate works with {', '.join(ANIMATOR_BACKBONES)}")
    if mode is not None and mode not in ("expression", "pose"):
        raise InputError(f"DPE mode must be 'expression' or 'pose', got {mode!r}")

    def plain(model, source: str, random_weights: bool = False) -> LoadedAnimator:
        opts = {"mode": mode or "expression"} if model.name == "dpe" else {}
        if mode is not None and model.name != "dpe":
            raise InputError(f"--mode is DPE's option; this model is {model.name}")
        return LoadedAnimator(retrofit(model, emi=None, edi=None, **opts).to(device).eval(), source, random_weights)

    def check(name: str, path: Path) -> None:
        if backbone is not None and name != backbone:
            raise CheckpointError(f"{str(path)!r} holds a {name} model, not {backbone} (drop --backbone or "
                                  "give a matching checkpoint)")

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

    path = Path(checkpoint)
    kind, meta = _kind(path)
    if kind == "retrofit":
        check(meta.get("backbone"), path)
        model = load_retrofitted(path, device)
        stored = getattr(model.adapter, "mode", None)
        if mode is not None and stored != mode:
            raise InputError(f"{path.name!r} is a retrofitted {model.backbone.name}"
                             + (f" in {stored} mode" if stored else "") + f"; it cannot run in {mode} mode")
        return LoadedAnimator(model, f"plugtalk retrofit file {path.name}")
    if kind == "backbone":
        check(meta.get("name"), path)
        model = B.load(path, device)
        if model.name not in ANIMATOR_BACKBONES:
            raise CheckpointError(f"{path.name!r} holds the {model.name} model, not an animator "
                                  f"({', '.join(ANIMATOR_BACKBONES)})")
        return plain(model, f"plugtalk backbone file {path.name}")
    if backbone is None:
        raise InputError(f"{path.name!r} looks like an official torch checkpoint: say which backbone it is "
                         f"with --backbone ({', '.join(ANIMATOR_BACKBONES)})")
    return plain(B.load_official(backbone, path, device), f"official {backbone} checkpoint {path.name}")


def load_audio_model(checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu"):
    """EDTalk's audio-to-mouth model (:class:`~plugtalk.backbones.EDTalkAudio`) from the official
    ``Audio2Lip.pt`` or a plugtalk ``edtalk-audio`` file; ``None`` gives random weights with a
    :class:`RandomWeightsWarning`.

    Returns:
        ``(model in eval mode, description)``.

    Raises:
        CheckpointError / ConversionError: unreadable file, or a file of another model.
    """
    from . import backbones as B

    if checkpoint is None:
        warnings.warn("RANDOM WEIGHTS: no --audio-checkpoint was given, so the audio-to-mouth model has random "
                      "weights and the mouth will not follow the speech. Pass EDTalk's Audio2Lip.pt.",
                      RandomWeightsWarning, stacklevel=2)
        return B.create("edtalk-audio").to(device).eval(), "random edtalk-audio weights"
    path = Path(checkpoint)
    kind, meta = _kind(path)
    if kind == "official":
        return B.load_official("edtalk-audio", path, device), f"official Audio2Lip checkpoint {path.name}"
    if kind != "backbone" or meta.get("name") != "edtalk-audio":
        raise CheckpointError(f"{path.name!r} is not an EDTalk audio model (kind={meta.get('kind')!r}, "
                              f"name={meta.get('name') or meta.get('backbone')!r})")
    return B.load(path, device), f"plugtalk edtalk-audio file {path.name}"
