"""``edtalk-expression``: EDTalk's expression stage (EDTalk suppl. Sec. 1.3).

Trains MLP^e (``expression_head``), the expression bank B^e (``banks.expression``) and the Expression
Enhance Module EEM (the generator's expression blocks); everything else - the encoder, the trunk, the
mouth and pose parts, the generator's other layers, EMI and EDI - stays frozen.  One step is a
self-reconstruction of an emotion-labelled clip's frame with every bank driven by that frame, from a
``neutral`` frame of the same identity where the labels have one
(:class:`plugtalk.data.decoupling.EmotionPairsDataset`): the frozen mouth and pose banks explain mouth and
pose, so what is left to learn is the expression.  Losses: L1, L_per, L_adv.

EDTalk: batch 10, lr 2e-3, all weights 1, on MEAD + HDTF (emotion labels; HDTF is neutral).
"""

from __future__ import annotations

from . import Stage, Start, register_stage
from .edtalk_common import EDTALK_START, frozen_modules_model


def expression_parts(backbone) -> tuple[str, ...]:
    """MLP^e, B^e and every EEM block of ``backbone``'s generator."""
    eem = tuple(f"generator.levels.{i}.expression" for i, level in enumerate(backbone.generator.levels)
                if level.expression is not None)
    return ("expression_head", "banks.expression", *eem)


def _build(cfg, start: Start):
    return frozen_modules_model(cfg, start, expression_parts(start.backbone), "edtalk-expression")


STAGE = register_stage(Stage(
    name="edtalk-expression",
    summary="EDTalk's expression modules only (MLP^e, B^e, EEM), on emotion-labelled clips",
    build=_build, losses=("rec", "per", "adv"), data="emotion-pairs", labels=("emotion",),
    start=EDTALK_START, needs_checkpoint="a pretrained EDTalk whose mouth-pose module is trained",
    backbones=("edtalk",), paper={"batch_size": 10, "lr": 2e-3, "data": "MEAD + HDTF with emotion labels"}))
