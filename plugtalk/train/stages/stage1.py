"""``stage1``: FixTalk's LIA-style pre-training of encoder + EMI + generator (FixTalk suppl. Sec. 1.2)."""

from __future__ import annotations

from ...emi import EMI
from ...retrofitting import Retrofitted
from . import Stage, Start, new_module, register_stage


def _build(cfg, start: Start) -> Retrofitted:
    emi = new_module(EMI, start.emi, cfg.model.emi, start.adapter.feature_spec, cfg, "emi")
    model = Retrofitted(start.adapter, emi, None, freeze_backbone=False)
    start.backbone.requires_grad_(True)
    return model


def _check(cfg) -> list[str]:
    if cfg.model.emi is False:
        return ["stage 'stage1' trains EMI: model.emi must not be false (use stage 'baseline')"]
    return []


STAGE = register_stage(Stage(
    name="stage1", summary="backbone + EMI, LIA-style self-reenactment pre-training",
    build=_build, losses=("rec", "per", "adv", "dis", "distill"), check=_check,
    paper={"batch_size": 16, "lr": 2e-4}))
