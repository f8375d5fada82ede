"""``edtalk-audio-lip``: EDTalk's Audio-to-Lip training (Tan et al., ECCV 2024, suppl. 1.3, Sec. 3.4).

A companion stage (:mod:`.companion`): the audio model (:class:`~plugtalk.backbones.EDTalkAudio`, mel windows
``(B, T, 1, 80, 16)`` -> mouth coefficients ``(B, T, 20)``) learns the mouth-bank coefficients the frozen
animator of ``model.checkpoint`` reads from the same frames (through its EMI when it has one).  Losses, as
the official ``train/trainer_audio2mouth.py`` sums them (windows of T = 5 frames, batch 4, Adam lr 2e-3 x 0.8,
betas (0, 0.99^0.8)); each weighted by ``loss.stage_weights.<name>``, ``rec`` / ``per`` by ``loss.rec`` /
``loss.per``:

=================  =======  ============================================================================
term               weight   what
=================  =======  ============================================================================
``coef``           1        ``MSE(pred, target)`` on the mouth coefficients
``smooth``         0.1      ``MSE`` of their frame-to-frame differences
``rec``            1        ``L1`` between the frozen animator's render (source = the clip's first frame;
                            mouth = prediction; pose, expression driven by the target frame, as
                            ``plugtalk animate --audio --pose`` drives them) and the target frame
``per``            1        VGG19 perceptual loss of the same render (needs ``loss.vgg_weights``)
``mouth``          1        ``L1`` between the 96 x 96 face crops of render and target
``sync``           5        SyncNet's ``-log cos(a, v)`` on the rendered crops (``loss.syncnet_weights``)
=================  =======  ============================================================================

Differences from the official code, on purpose: the linear map starts as the mean predictor
(``audio.init_at_mean``; official: default init, bias 0), and a trained encoder's BatchNorm statistics are
re-estimated on training windows at the end (``audio.bn_windows``); a frozen encoder stays in eval mode
(fixed statistics; the official script lets them drift); no adversarial term (the official discriminator
is random and never updated); the face box is a fixed fraction of the aligned crop (``audio.face_box``)
instead of a per-frame S3FD detection; SyncNet gets the mel window of the middle frame, which with
EDTalk's two-frame context spans exactly the 5 rendered frames (the official code passes the first
frame's, two frames early).  Like the official code, which ``torch.load`` s ``ckpt/checkpoint.pth``
whenever the sync weight is non-zero, a missing SyncNet file stops training (``loss.stage_weights:
{sync: 0}`` trains without it); missing VGG weights drop ``per`` with a warning.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...data.audio_windows import AudioWindows
from ...errors import InputError
from ...retrofitting import Retrofitted
from . import Objective, Stage, register_stage
from .companion import Companion, companion_model
from .edtalk_common import EDTALK_START

__all__ = ["STAGE", "COMPANION", "render_mouth", "load_wav2lip_encoder", "recalibrate_batchnorm",
           "mouth_errors", "WINDOW"]

#: frames per window by default: SyncNet sees 5
WINDOW = 5
#: what the stage trains and where it writes it
COMPANION = Companion("edtalk-audio", "audio_lip.safetensors")
#: the weights of the official sum (``loss.rec`` / ``loss.per`` weigh the render's L1 and VGG terms)
WEIGHTS = {"coef": 1.0, "smooth": 0.1, "mouth": 1.0, "sync": 5.0}


def render_mouth(animator: Retrofitted, identity: Tensor, frames: Tensor, mouth: Tensor) -> Tensor:
    """The frozen animator's renders of predicted ``mouth (B, T, 20)`` coefficients: source ``identity
    (B, 3, S, S)``, pose and expression driven by ``frames (B, T, 3, S, S)`` in [-1, 1]; ``(B, T, 3, S, S)``."""
    b, t = mouth.shape[:2]
    drive = frames.flatten(0, 1)
    out = animator(identity.repeat_interleave(t, dim=0), mouth_coefficients=mouth.reshape(b * t, -1),
                   pose=drive, expression=drive)
    return out.reshape(b, t, *out.shape[1:])


def load_wav2lip_encoder(model: nn.Module, path: str) -> None:
    """Copy Wav2Lip's ``audio_encoder.*`` weights (``state_dict``, optional ``module.`` prefix) into ``model.blocks``."""
    from ...backbones.official import read_official_checkpoint
    from ...errors import CheckpointError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"Wav2Lip checkpoint {str(p)!r} does not exist")
    raw = read_official_checkpoint(p, "state_dict")
    key_map = model.official_key_map(model.config).rename
    ours = {}
    for k, v in raw.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("audio_encoder.") and k in key_map:
            ours[key_map[k]] = v
    want = {k for k in model.state_dict() if k.startswith("blocks.")}
    if set(ours) != want:
        raise CheckpointError(f"{p.name!r} has no complete Wav2Lip audio encoder ({len(ours)} of {len(want)} tensors)")
    missing = model.load_state_dict(ours, strict=False)
    if missing.unexpected_keys:  # pragma: no cover - guarded by the key check above
        raise CheckpointError(f"{p.name!r}: unexpected keys {missing.unexpected_keys[:4]}")


def recalibrate_batchnorm(model: nn.Module, data: AudioWindows, windows: int, device, chunk: int = 16) -> None:
    """Re-estimate the BatchNorm running statistics of the trained weights on up to ``windows`` training
    windows spread evenly over all clips (``torch.optim.swa_utils.update_bn``): the running averages
    collected while the weights moved lag behind them, and eval mode reads them."""
    from torch.optim.swa_utils import update_bn

    every = data.starts("train", stride=data.length)
    n = min(windows, len(every))
    starts = [every[i] for i in sorted({round(k * (len(every) - 1) / max(1, n - 1)) for k in range(n)})]
    batches = [data.batch(starts[i:i + chunk])["mel"] for i in range(0, len(starts), chunk)]
    update_bn(batches, model, device=device)


@torch.no_grad()
def mouth_errors(model: nn.Module, data: AudioWindows, split: str = "heldout", batch_size: int = 64) -> dict[str, float]:
    """Mean squared mouth-coefficient error on ``split``'s windows (non-overlapping): ``model`` (in eval
    mode) and the constant predictor ``mean`` (the training windows' mean coefficients)."""
    starts = data.starts(split, stride=data.length)
    if not starts:
        raise InputError(f"no {split} windows of {data.length} frames")
    train_mean = data.train_mean("mouth")
    was = model.training
    model.eval()
    p = next(model.parameters())
    se_model = se_mean = count = 0.0
    for i in range(0, len(starts), batch_size):
        b = data.batch(starts[i:i + batch_size])
        pred = model(b["mel"].to(device=p.device, dtype=p.dtype)).float().cpu()
        se_model += float((pred - b["mouth"]).pow(2).sum())
        se_mean += float((train_mean - b["mouth"]).pow(2).sum())
        count += b["mouth"].numel()
    model.train(was)
    return {"model": se_model / count, "mean": se_mean / count}


# -- the stage ----------------------------------------------------------------------------------------
def _weight(cfg, name: str) -> float:
    from . import loss_weight

    return loss_weight(cfg, STAGE, name)


def _renders(cfg) -> bool:
    """Whether a term on the rendered frames is on (then the clips' frames are kept and rendered)."""
    return max(_weight(cfg, k) for k in ("rec", "per", "mouth", "sync")) > 0


def _data_options(cfg) -> dict:
    return {"banks": ("mouth",), "length": cfg.audio.window or WINDOW, "frames": _renders(cfg)}


def _check(cfg) -> list[str]:
    """Config-time rules: SyncNet is required while its weight is non-zero (as the official script, which
    loads ``ckpt/checkpoint.pth`` whenever it is), and it sees 5 frames."""
    sync = _weight(cfg, "sync")
    if sync > 0 and not cfg.loss.syncnet_weights:
        return [f"stage 'edtalk-audio-lip': the sync loss (weight {sync:g}) needs SyncNet weights: give "
                "loss.syncnet_weights=<Wav2Lip's lipsync_expert.pth or EDTalk's ckpt/checkpoint.pth>, or set "
                "loss.stage_weights.sync=0 to train without L_sync"]
    if sync > 0 and (cfg.audio.window or WINDOW) != WINDOW:
        return [f"stage 'edtalk-audio-lip': the sync loss needs audio.window = {WINDOW} (SyncNet sees 5 frames); "
                "set loss.stage_weights.sync=0 to train on other windows"]
    return []


def _build(cfg, start):
    """The audio model (all of it trains; with ``audio.wav2lip`` its encoder starts from Wav2Lip's and, as the
    official setting, stays frozen) beside the frozen animator."""
    from ..config import expand_path

    model = companion_model(cfg, start, COMPANION)
    a = cfg.audio
    if a.wav2lip:
        load_wav2lip_encoder(model.companion, expand_path(a.wav2lip))
    if (bool(a.wav2lip) if a.freeze_encoder is None else a.freeze_encoder):
        model.companion.blocks.requires_grad_(False)
    return model


def _setup(trainer) -> dict:
    """SyncNet (required while its weight is non-zero), and the mean-predictor start of the linear map."""
    from ..config import expand_path
    from ..syncnet import load_syncnet

    cfg, state = trainer.cfg, {}
    if trainer.loss_weight("sync") > 0:  # the config check made sure the file is named
        state["syncnet"] = load_syncnet(expand_path(cfg.loss.syncnet_weights), trainer.device)
    linear = trainer.model.companion.to_mouth
    windows = getattr(trainer.dataset, "windows", None)
    if cfg.audio.init_at_mean and linear.bias.requires_grad and windows is not None:
        with torch.no_grad():  # (official: default Linear init, bias 0)
            linear.weight.zero_()
            linear.bias.copy_(windows.train_mean("mouth").to(linear.bias))
    return state


def _objective(model, batch, trainer) -> Objective:
    from ..syncnet import face_crops, sync_loss

    cfg = trainer.cfg
    pred = model(batch["mel"]).float()
    target = batch["mouth"].float()
    losses = {"coef": F.mse_loss(pred, target),
              "smooth": F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])}
    if "frames" not in batch:
        return Objective(None, None, losses)
    real = batch["frames"]
    render = render_mouth(trainer.model.animator, batch["identity_frame"], real, pred)
    if trainer.loss_weight("mouth") > 0 or "syncnet" in trainer.stage_state:
        crop_fake, crop_real = face_crops(render, cfg.audio.face_box), face_crops(real, cfg.audio.face_box)
        losses["mouth"] = (crop_fake.float() - crop_real.float()).abs().mean()
        if "syncnet" in trainer.stage_state:
            mid = batch["mel"][:, batch["mel"].shape[1] // 2]
            losses["sync"] = sync_loss(trainer.stage_state["syncnet"], mid, crop_fake)
    return Objective(render.flatten(0, 1), real.flatten(0, 1), losses)


def _finish(trainer) -> None:
    encoder = trainer.model.companion.blocks
    windows = getattr(trainer.dataset, "windows", None)
    if trainer.cfg.audio.bn_windows and windows is not None and any(p.requires_grad for p in encoder.parameters()):
        recalibrate_batchnorm(trainer.model.companion, windows, trainer.cfg.audio.bn_windows, trainer.device)


STAGE = register_stage(Stage(
    name="edtalk-audio-lip",
    summary="EDTalk's Audio-to-Lip model (mel windows -> mouth coefficients) against the frozen animator",
    build=_build, losses=("coef", "smooth", "rec", "per", "mouth", "sync"), data="audio-windows",
    start=EDTALK_START, needs_checkpoint="the frozen EDTalk animator whose mouth coefficients it learns",
    backbones=("edtalk",), weights=WEIGHTS, objective=_objective, setup=_setup, check=_check, finish=_finish,
    companion=COMPANION, data_options=_data_options,
    paper={"batch_size": 4, "lr": 2e-3 * 0.8, "betas": [0.0, 0.99 ** 0.8], "steps": 30_000,
           "data": "HDTF clips with sound"}))
