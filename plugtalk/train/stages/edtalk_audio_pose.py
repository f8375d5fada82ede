"""``edtalk-audio-pose``: EDTalk's Audio-to-Pose training (Tan et al., ECCV 2024, suppl. 1.1 Eqs. 1-2, 1.3).

A companion stage (:mod:`.companion`): the normalizing flow :class:`~plugtalk.backbones.EDTalkPoseFlow`
(every parameter trains, its audio encoder included) is fitted by maximum likelihood to sequences of the
frozen animator's pose-bank coefficients, conditioned on the mel windows of the same frames: the loss
``nll`` is the negative log-likelihood in nats per pose dimension and frame, ``-log p(W^p | f^a) / (T * D)``.
Before the first step every actnorm is initialised on ``audio.init_windows`` training windows (Glow's
data-dependent start: the first one normalises by the poses' mean ``mu`` and standard deviation ``delta``,
EDTalk's ``h' = (beta - mu) / delta``).  EDTalk states only "one hour on HDTF" and released no code for this
stage; the window (25 frames) and the optimiser settings of the recipe step are plugtalk's.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...data.audio_windows import AudioWindows
from ...errors import InputError
from . import Objective, Stage, register_stage
from .companion import Companion, companion_model
from .edtalk_common import EDTALK_START

__all__ = ["STAGE", "COMPANION", "pose_flow_loss", "pose_log_likelihood", "WINDOW"]

#: frames per pose sequence by default (1 s at 25 fps)
WINDOW = 25
#: what the stage trains and where it writes it
COMPANION = Companion("edtalk-pose-flow", "audio_pose.safetensors")


def pose_flow_loss(log_likelihood: Tensor, pose: Tensor) -> Tensor:
    """Negative log-likelihood in nats per dimension, ``-mean_b log p(pose_b | audio_b) / (T * D)``, from the
    flow's ``log_likelihood (B,)`` of ``pose (B, T, D)``."""
    return -log_likelihood.float().mean() / (pose.shape[1] * pose.shape[2])


@torch.no_grad()
def pose_log_likelihood(flow, data: AudioWindows, split: str = "heldout", batch_size: int = 64) -> float:
    """Mean log-likelihood in nats per dimension of ``split``'s non-overlapping pose windows (flow in eval mode)."""
    starts = data.starts(split, stride=data.length)
    if not starts:
        raise InputError(f"no {split} windows of {data.length} frames")
    p = next(flow.parameters())
    total, n = 0.0, 0
    for i in range(0, len(starts), batch_size):
        b = data.batch(starts[i:i + batch_size])
        pose = b["pose"].to(p)
        total += float(-pose_flow_loss(flow.log_likelihood(pose, b["mel"].to(p)), pose)) * len(pose)
        n += len(b["pose"])
    return total / n


def _data_options(cfg) -> dict:
    return {"banks": ("pose",), "length": cfg.audio.window or WINDOW, "frames": False}


def _build(cfg, start):
    return companion_model(cfg, start, COMPANION)


def _setup(trainer) -> dict:
    """Glow's data-dependent actnorm start on ``audio.init_windows`` training windows (a flow loaded from
    ``audio.companion_checkpoint`` or a resumed run keeps its own)."""
    flow = trainer.model.companion
    if not bool(flow.flow_steps[0].actnorm.initialized):
        data = trainer.dataset
        g = torch.Generator().manual_seed(trainer.cfg.seed)
        pick = torch.randperm(len(data), generator=g)[: trainer.cfg.audio.init_windows].tolist()
        items = [data[i] for i in pick]
        p = next(flow.parameters())
        flow.initialize(torch.stack([x["pose"] for x in items]).to(p), torch.stack([x["mel"] for x in items]).to(p))
    return {}


def _objective(model, batch, trainer) -> Objective:
    pose = batch["pose"]
    return Objective(None, None, {"nll": pose_flow_loss(model(pose, batch["mel"], method="log_likelihood"), pose)})


STAGE = register_stage(Stage(
    name="edtalk-audio-pose",
    summary="EDTalk's Audio-to-Pose normalizing flow (pose sequences given audio) against the frozen animator",
    build=_build, losses=("nll",), data="audio-windows", start=EDTALK_START,
    needs_checkpoint="the frozen EDTalk animator whose pose coefficients it models", backbones=("edtalk",),
    weights={"nll": 1.0}, objective=_objective, setup=_setup, companion=COMPANION, data_options=_data_options,
    paper={"data": "HDTF clips with sound, about one hour of training (no other setting stated)"}))
