"""``stage2``: EDI alone on the frozen stage-1 model (FixTalk suppl. Sec. 1.2)."""

from __future__ import annotations

from ...edi import EDI
from ...errors import InputError
from ...retrofitting import Retrofitted
from . import Stage, Start, new_module, register_stage


def _build(cfg, start: Start) -> Retrofitted:
    m = cfg.model
    if start.loaded is None:
        raise InputError("stage 'stage2' starts from the stage-1 result: model.checkpoint must be a "
                         "retrofitted .safetensors file (e.g. <stage-1 output>/model.safetensors)")
    emi = start.emi
    edi = new_module(EDI, None if m.fresh_edi else start.edi, m.edi if m.edi is not False else True,
                     start.adapter.feature_spec, cfg, "edi")
    if emi is not None and emi.bridge_gate > 0:
        raise InputError(f"model.checkpoint {m.checkpoint!r}: its EMI still passes the latent through (bridge gate "
                         f"{emi.bridge_gate:g}); stage 2 freezes EMI, so start it from a finished stage-1 "
                         "model (<output_dir>/model.safetensors), whose bridge is closed")
    model = Retrofitted(start.adapter, emi, edi, freeze_backbone=True)
    if model.emi is not None:
        model.emi.requires_grad_(False)
    return model


STAGE = register_stage(Stage(
    name="stage2", summary="EDI only; backbone and EMI frozen (from the stage-1 model)",
    build=_build, losses=("rec", "per", "adv", "dis", "distill", "dmem", "align"),
    start="the stage-1 result (a retrofitted .safetensors)", needs_checkpoint="the pretrained stage-1 result",
    paper={"batch_size": 16, "lr": 2e-4}))
