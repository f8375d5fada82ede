"""What EDTalk's stages share: the start (a pretrained EDTalk, with a FixTalk model's EMI / EDI kept
frozen), the tap recorder for per-bank coefficients, and the mouth-region loss."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from ...errors import InputError
from ...retrofitting import Retrofitted
from . import Start, train_only

#: the words every EDTalk stage uses for its start
EDTALK_START = ("a pretrained EDTalk: EDTalk.pt, a plugtalk EDTalk file, or the previous stage's "
                "model.safetensors (its EMI / EDI are kept, frozen)")


def frozen_modules_model(cfg, start: Start, parts: tuple[str, ...], stage: str) -> Retrofitted:
    """The start model with only the backbone ``parts`` training; a loaded EMI / EDI is kept frozen.

    Raises:
        InputError: an EMI whose latent bridge is still open (an unfinished stage-1 model).
    """
    emi, edi = start.emi, start.edi
    if emi is not None and emi.bridge_gate > 0:
        raise InputError(f"model.checkpoint {cfg.model.checkpoint!r}: its EMI still passes the latent through "
                         f"(bridge gate {emi.bridge_gate:g}); stage {stage!r} freezes EMI, so start it from a finished "
                         "stage-1/stage-2 model, whose bridge is closed")
    return train_only(Retrofitted(start.adapter, emi, edi, freeze_backbone=False), parts)


@contextlib.contextmanager
def recorded(model: Retrofitted, names: tuple[str, ...]) -> Iterator[dict[str, Tensor]]:
    """Record (with gradients) the values passing the tap points ``names`` during the block."""
    values: dict[str, Tensor] = {}
    handles = []
    for name in names:
        def hook(module: nn.Module, args, output, _name=name):
            values[_name] = output
        handles.append(model.taps.point(name).register_forward_hook(hook))
    try:
        yield values
    finally:
        for h in handles:
            h.remove()


def masked_l1(fake: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """``sum |fake - target| * mask / (3 * sum mask)``: L1 inside a region; ``mask (N, 1, S, S)`` in {0, 1}."""
    m = mask.to(fake.dtype)
    return ((fake.float() - target.float()).abs() * m).sum() / (3 * m.sum()).clamp_min(1.0)


def feature_constraint(cross: Tensor, own: Tensor) -> Tensor:
    """EDTalk's L_fea for one bank: ``mean_b exp(-cos(cross_b, own_b))`` between the coefficients a
    cross-reconstruction used and those of the unmodified frame.  The bank's basis is orthonormal, so this
    is the cosine of the bank directions the official code compares (the official code sums over the batch;
    the mean keeps the weight independent of the batch size)."""
    return torch.exp(-torch.nn.functional.cosine_similarity(cross.float(), own.float(), dim=-1)).mean()
