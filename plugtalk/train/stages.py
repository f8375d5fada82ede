"""The model each training stage starts from, and which of its parts train.

FixTalk suppl. Sec. 1.2: the encoder, EMI and generator are pre-trained LIA-style (``stage1``), then
EDI is trained with the rest frozen (``stage2``).  ``retrofit`` plugs EMI/EDI into a pretrained
(e.g. official) backbone and trains only the modules; ``baseline`` trains the plain backbone.

=========  ==================  ===========  ==========================================
stage      EMI                 EDI          trains
=========  ==================  ===========  ==========================================
stage1     yes                 no           backbone + EMI
stage2     from checkpoint     yes          EDI only
retrofit   per ``model.emi``   per ``edi``  EMI + EDI (+ backbone if unfrozen)
baseline   no                  no           backbone
=========  ==================  ===========  ==========================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError
from ..edi import EDI
from ..emi import EMI
from ..loading import open_weights
from ..retrofitting import Retrofitted, _build_module
from .config import TrainConfig, expand_path

__all__ = ["build_model", "set_train_mode", "frozen_modules", "describe"]


def _load_start(cfg: TrainConfig) -> tuple[nn.Module, Retrofitted | None]:
    """The starting backbone and, for a retrofitted file, the whole retrofitted model."""
    from .. import backbones

    m = cfg.model
    if not m.checkpoint:
        return backbones.create(m.backbone, **m.overrides), None
    path = Path(expand_path(m.checkpoint))
    if not path.is_file():
        raise InputError(f"model.checkpoint {str(path)!r} does not exist")
    weights = open_weights(path)
    if weights.backbone is not None and weights.backbone != m.backbone:
        what = "a retrofitted" if weights.kind == "retrofit" else "a"
        raise InputError(f"model.checkpoint {str(path)!r} holds {what} {weights.backbone!r}"
                         f"{'' if weights.kind == 'retrofit' else ' backbone'}, but model.backbone is {m.backbone!r}")
    if weights.kind == "retrofit":
        r = weights.load_retrofitted()
        return r.backbone, r
    return weights.load_backbone(m.backbone, **(m.overrides if weights.kind == "official" else {})), None


def _module(cls, loaded: Any, option: Any, spec, init: str, name: str):
    if loaded is not None:
        return loaded
    if option is False:
        return None
    try:
        return _build_module(cls, option, spec, init == "passthrough")
    except (TypeError, ValueError) as e:
        raise InputError(f"model.{name}: {e}") from None


def build_model(cfg: TrainConfig) -> Retrofitted:
    """Build the model of ``cfg.stage`` with ``requires_grad`` set on exactly the parts that train.

    Raises:
        InputError: missing/wrong checkpoint, or module options that do not fit the backbone.
        CheckpointError / ConversionError: an unreadable or mismatching checkpoint.
    """
    from ..adapters import adapter_for

    backbone, loaded = _load_start(cfg)
    backbone.train()
    m, stage = cfg.model, cfg.stage
    if loaded is None:
        adapter = adapter_for(backbone, **m.adapter)
    else:  # the checkpoint's adapter, with model.adapter's options on top (e.g. an identity_level for EMI/EDI)
        options = {**loaded.adapter.options(), **m.adapter}
        adapter = loaded.adapter if options == loaded.adapter.options() else adapter_for(backbone, **options)
        level, was = adapter.feature_spec.identity_level, loaded.spec.identity_level
        if level != was and (loaded.emi is not None or loaded.edi is not None):
            raise InputError(f"model.adapter: identity level {level}, but the checkpoint's EMI/EDI were built for "
                             f"level {was} ({m.checkpoint})")
    spec = adapter.feature_spec
    loaded_emi = loaded.emi if loaded is not None else None
    loaded_edi = loaded.edi if loaded is not None and not m.fresh_edi else None
    if stage == "baseline":
        model = Retrofitted(adapter, None, None, freeze_backbone=False)
    elif stage == "stage1":
        emi = _module(EMI, loaded_emi, m.emi, spec, m.init, "emi")
        model = Retrofitted(adapter, emi, None, freeze_backbone=False)
    elif stage == "stage2":
        if loaded is None:
            raise InputError("stage 'stage2' starts from the stage-1 result: model.checkpoint must be a "
                             "retrofitted .safetensors file (e.g. <stage-1 output>/model.safetensors)")
        edi = _module(EDI, loaded_edi, m.edi if m.edi is not False else True, spec, m.init, "edi")
        if loaded_emi is not None and loaded_emi.bridge_gate > 0:
            raise InputError(f"model.checkpoint {m.checkpoint!r}: its EMI still passes the latent through (bridge gate "
                             f"{loaded_emi.bridge_gate:g}); stage 2 freezes EMI, so start it from a finished stage-1 "
                             "model (<output_dir>/model.safetensors), whose bridge is closed")
        model = Retrofitted(adapter, loaded_emi, edi, freeze_backbone=True)
        if model.emi is not None:
            model.emi.requires_grad_(False)
    elif stage == "retrofit":
        emi = _module(EMI, loaded_emi, m.emi, spec, m.init, "emi")
        edi = _module(EDI, loaded_edi, m.edi, spec, m.init, "edi")
        if emi is None and edi is None:
            raise InputError("stage 'retrofit' trains EMI and/or EDI: model.emi and model.edi are both false")
        model = Retrofitted(adapter, emi, edi, freeze_backbone=not m.unfreeze_backbone)
        if m.unfreeze_backbone:
            backbone.requires_grad_(True)
    else:  # validated by the config
        raise InputError(f"unknown stage {stage!r}")
    if stage in ("baseline", "stage1"):
        backbone.requires_grad_(True)
    if not model.trainable_parameters():
        raise InputError(f"stage {stage!r}: nothing to train")
    return model


def frozen_modules(model: Retrofitted) -> list[nn.Module]:
    """Parts of ``model`` (backbone, EMI, EDI) whose parameters all stay fixed."""
    parts = [model.adapter.backbone, model.emi, model.edi]
    return [p for p in parts if p is not None and not any(q.requires_grad for q in p.parameters())]


def set_train_mode(model: nn.Module, retrofitted: Retrofitted) -> None:
    """``model.train()`` with every frozen part kept in eval mode (no dropout, fixed statistics)."""
    model.train()
    for part in frozen_modules(retrofitted):
        part.eval()


def describe(model: Retrofitted) -> dict[str, Any]:
    """Parameter counts per part: ``{part: (trainable, total)}``."""
    out = {}
    for name, part in (("backbone", model.adapter.backbone), ("emi", model.emi), ("edi", model.edi)):
        if part is not None:
            ps = list(part.parameters())
            out[name] = (sum(p.numel() for p in ps if p.requires_grad), sum(p.numel() for p in ps))
    return out

