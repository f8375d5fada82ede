"""``baseline``: the plain backbone, no EMI/EDI (for ablations)."""

from __future__ import annotations

from ...retrofitting import Retrofitted
from . import Stage, Start, register_stage


def _build(cfg, start: Start) -> Retrofitted:
    model = Retrofitted(start.adapter, None, None, freeze_backbone=False)
    start.backbone.requires_grad_(True)
    return model


STAGE = register_stage(Stage(
    name="baseline", summary="the plain backbone, no EMI/EDI (ablations)", build=_build,
    losses=("rec", "per", "adv")))
