"""EDTalk's Audio-to-Pose training (``edtalk-audio-pose``; Tan et al., ECCV 2024, suppl. 1.1 Eqs. 1-2, 1.3).

The normalizing flow :class:`~plugtalk.backbones.EDTalkPoseFlow` is fitted by maximum likelihood to
sequences of the frozen EDTalk animator's pose-bank coefficients, conditioned on the mel windows of
the same frames: the loss is the negative log-likelihood in nats per pose dimension and frame,
``-log p(W^p | f^a) / (T * D)``.  Before the first step every actnorm is initialised on the
training poses (Glow's data-dependent start: the first one normalises by the poses' mean ``mu``
and standard deviation ``delta``, EDTalk's ``h' = (beta - mu) / delta``).  EDTalk states only "one
hour on HDTF" and released no code for this stage; the optimiser settings are plugtalk's.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..errors import InputError
from ..data.audio_windows import AudioWindows
from .edtalk_audio_lip import MAX_STEPS

__all__ = ["AudioPoseSettings", "pose_flow_loss", "train_audio_pose", "pose_log_likelihood"]


@dataclasses.dataclass
class AudioPoseSettings:
    """``edtalk-audio-pose`` options (plugtalk's defaults: EDTalk gives none)."""

    steps: int = 20_000
    batch_size: int = 16
    window: int = 25          #: frames per pose sequence (1 s at 25 fps)
    lr: float = 1e-3
    grad_clip: float = 10.0
    init_windows: int = 512   #: training windows the actnorm initialisation reads
    seed: int = 0

    def check(self) -> None:
        """Raises InputError for any option out of range."""
        bad = []
        if not 1 <= self.steps <= MAX_STEPS:
            bad.append(f"steps must be in [1, {MAX_STEPS}]")
        if not 1 <= self.batch_size <= 4096:
            bad.append("batch_size must be in [1, 4096]")
        if not 1 <= self.window <= 1000:
            bad.append("window must be in [1, 1000] frames")
        if not 0 < self.lr <= 1:
            bad.append("lr must be in (0, 1]")
        if not 0 < self.grad_clip <= 1e6:
            bad.append("grad_clip must be in (0, 1e6]")
        if not 1 <= self.init_windows <= 100_000:
            bad.append("init_windows must be in [1, 100000]")
        if bad:
            raise InputError("edtalk-audio-pose: " + "; ".join(bad))


def pose_flow_loss(flow, pose: Tensor, audio: Tensor) -> Tensor:
    """Negative log-likelihood in nats per dimension: ``-mean_b log p(pose_b | audio_b) / (T * D)``."""
    return -flow.log_likelihood(pose, audio).mean() / (pose.shape[1] * pose.shape[2])


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
        total += float(-pose_flow_loss(flow, b["pose"].to(p), b["mel"].to(p))) * len(b["pose"])
        n += len(b["pose"])
    return total / n


def train_audio_pose(flow, data: AudioWindows, s: AudioPoseSettings, *, output: str | Path | None = None,
                     log: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Fit ``flow`` (an :class:`~plugtalk.backbones.EDTalkPoseFlow`, every parameter trains, its audio
    encoder included) to ``data``'s training windows (``pose`` and ``mel``).

    With ``output`` the result is written atomically to ``<output>/audio_pose.safetensors``.

    Returns:
        one ``{"nll": nats per dimension}`` per step.

    Raises:
        InputError: bad settings, windows of another length, or fewer training windows than one batch.
        TrainingDiverged: a non-finite loss or gradient (no update is applied).
    """
    from .trainer import TrainingDiverged

    s.check()
    if data.length != s.window:
        raise InputError(f"edtalk-audio-pose: the data's windows have {data.length} frames, settings.window is {s.window}")
    starts = data.starts("train")
    if len(starts) < s.batch_size:
        raise InputError(f"edtalk-audio-pose: {len(starts)} training windows, fewer than one batch of {s.batch_size}")
    p = next(flow.parameters())
    g = torch.Generator().manual_seed(s.seed)
    flow.requires_grad_(True)
    if not bool(flow.flow_steps[0].actnorm.initialized):
        pick = torch.randperm(len(starts), generator=g)[: s.init_windows].tolist()
        b = data.batch([starts[i] for i in pick])
        flow.initialize(b["pose"].to(p), b["mel"].to(p))
    params = list(flow.parameters())
    opt = torch.optim.Adam(params, lr=s.lr)
    history = []
    flow.train()
    for step in range(1, s.steps + 1):
        pick = torch.randint(len(starts), (s.batch_size,), generator=g).tolist()
        b = data.batch([starts[i] for i in pick])
        loss = pose_flow_loss(flow, b["pose"].to(p), b["mel"].to(p))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        if not (math.isfinite(float(loss.detach())) and math.isfinite(float(norm))):
            raise TrainingDiverged(f"edtalk-audio-pose step {step}: non-finite loss or gradient", step, ["nll"])
        opt.step()
        history.append({"nll": float(loss.detach())})
        if log is not None:
            log(step, history[-1])
    flow.eval()
    if output is not None:
        flow.save_pretrained(Path(output) / "audio_pose.safetensors", {"stage": "edtalk-audio-pose", "steps": s.steps})
    return history
