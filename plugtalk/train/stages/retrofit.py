"""``retrofit``: EMI and/or EDI plugged into a pretrained (e.g. official) backbone, which stays frozen
unless ``model.unfreeze_backbone``."""

from __future__ import annotations

from ...edi import EDI
from ...emi import EMI
from ...errors import InputError
from ...retrofitting import Retrofitted
from . import Stage, Start, new_module, register_stage


def _build(cfg, start: Start) -> Retrofitted:
    m, spec = cfg.model, start.adapter.feature_spec
    emi = new_module(EMI, start.emi, m.emi, spec, cfg, "emi")
    edi = new_module(EDI, None if m.fresh_edi else start.edi, m.edi, spec, cfg, "edi")
    if emi is None and edi is None:
        raise InputError("stage 'retrofit' trains EMI and/or EDI: model.emi and model.edi are both false")
    model = Retrofitted(start.adapter, emi, edi, freeze_backbone=not m.unfreeze_backbone)
    if m.unfreeze_backbone:
        start.backbone.requires_grad_(True)
    return model


STAGE = register_stage(Stage(
    name="retrofit", summary="EMI + EDI on a frozen pretrained backbone (+ the backbone with model.unfreeze_backbone)",
    build=_build, losses=("rec", "per", "adv", "dis", "distill", "dmem", "align"),
    start="a pretrained backbone (official .pt or plugtalk file)",
    needs_checkpoint="the pretrained backbone: official .pt or plugtalk file"))
