"""EDTalk's Audio-to-Lip training (``edtalk-audio-lip``; Tan et al., ECCV 2024, suppl. 1.3, Sec. 3.4).

The audio model (:class:`~plugtalk.backbones.EDTalkAudio`, mel windows ``(B, T, 1, 80, 16)`` ->
mouth coefficients ``(B, T, 20)``) learns the mouth-bank coefficients the frozen EDTalk animator
reads from the same frames.  Losses, as the official ``train/trainer_audio2mouth.py`` sums them
(windows of T = 5 frames, batch 4, Adam lr 2e-3 x 0.8, betas (0, 0.99^0.8)):

=================  =======  ============================================================================
term               weight   what
=================  =======  ============================================================================
``coef``           1        ``MSE(pred, target)`` on the mouth coefficients
``smooth``         0.1      ``MSE`` of their frame-to-frame differences
``image``          1        ``L1`` between the frozen generator's render (source = the clip's first
                            frame; mouth = prediction; pose, expression = the animator's reading of
                            the target frame) and the target frame
``per``            1        VGG19 perceptual loss of the same render (needs ``vgg_weights``)
``mouth``          1        ``L1`` between the 96 x 96 face crops of render and target
``sync``           5        SyncNet's ``-log cos(a, v)`` on the rendered crops (needs ``syncnet``)
=================  =======  ============================================================================

Differences from the official code, on purpose: the linear map starts as the mean predictor (weight 0,
bias = the training targets' mean: ``init_at_mean``; official: default init, bias 0), and a trained encoder's BatchNorm statistics are re-estimated on
training windows at the end (``bn_windows``); a frozen encoder stays in eval mode (fixed statistics;
the official script lets them drift); no adversarial term (the official discriminator is
random and never updated); the face box is a fixed fraction of the aligned crop (``face_box``)
instead of a per-frame S3FD detection; SyncNet gets the mel window of the middle frame, which with
EDTalk's two-frame context spans exactly the 5 rendered frames (the official code passes the first
frame's, two frames early).  Like the official code, which ``torch.load`` s ``ckpt/checkpoint.pth``
whenever the sync weight is non-zero, a missing SyncNet file stops training (set ``sync: 0`` to
train without it); missing VGG weights drop ``per`` with a warning.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..data.audio_windows import AudioWindows

__all__ = ["AudioLipSettings", "edtalk_bank_reader", "render_mouth", "face_crops", "audio_lip_losses",
           "prepare_audio_lip_model", "train_audio_lip", "mouth_errors", "MAX_STEPS"]

#: Upper bound of any user-given step count in the audio stages.
MAX_STEPS = 10_000_000


@dataclasses.dataclass
class AudioLipSettings:
    """``edtalk-audio-lip`` options (defaults: the official script, suppl. 1.3's 30 k iterations, batch 4)."""

    steps: int = 30_000
    batch_size: int = 4
    window: int = 5                   #: frames per window (SyncNet sees 5)
    lr: float = 2e-3 * 0.8            #: official: lr * g_reg_ratio with g_reg_every 4
    betas: tuple[float, float] = (0.0, 0.99 ** 0.8)
    coef: float = 1.0
    smooth: float = 0.1
    image: float = 1.0
    per: float = 1.0
    mouth: float = 1.0
    sync: float = 5.0
    syncnet: str | None = None        #: SyncNet weights (official format), required when ``sync > 0``
    vgg_weights: str | None = None    #: torchvision VGG19 weights for ``per``
    face_box: tuple[float, float, float, float] = (0.15, 0.15, 0.85, 0.95)  #: left, top, right, bottom (fractions)
    wav2lip: str | None = None        #: Wav2Lip checkpoint whose audio encoder initialises ours (official start)
    freeze_encoder: bool | None = None  #: ``None``: frozen iff initialised from ``wav2lip`` (as official)
    grad_clip: float = 10.0
    init_at_mean: bool = True         #: start the linear map at the mean predictor: weight 0, bias = targets' mean
    bn_windows: int = 256             #: training windows that re-estimate BatchNorm statistics at the end
    seed: int = 0

    def check(self) -> None:
        """Raises InputError for any option out of range."""
        bad = []
        if not 0 <= self.bn_windows <= 100_000:
            bad.append("bn_windows must be in [0, 100000]")
        if not 1 <= self.steps <= MAX_STEPS:
            bad.append(f"steps must be in [1, {MAX_STEPS}]")
        if not 1 <= self.batch_size <= 4096:
            bad.append("batch_size must be in [1, 4096]")
        if not 2 <= self.window <= 250:
            bad.append("window must be in [2, 250] frames")
        if not 0 < self.lr <= 1:
            bad.append("lr must be in (0, 1]")
        for k in ("coef", "smooth", "image", "per", "mouth", "sync"):
            v = getattr(self, k)
            if not (math.isfinite(v) and 0 <= v <= 1e4):
                bad.append(f"weight {k} must be in [0, 1e4]")
        l, t, r, b = self.face_box
        if not (0 <= l < r <= 1 and 0 <= t < b <= 1):
            bad.append("face_box must be fractions 0 <= left < right <= 1, 0 <= top < bottom <= 1")
        if self.sync > 0 and self.window != 5:
            bad.append("the sync loss needs window = 5 (SyncNet sees 5 frames)")
        if not 0 < self.grad_clip <= 1e6:
            bad.append("grad_clip must be in (0, 1e6]")
        if bad:
            raise InputError("edtalk-audio-lip: " + "; ".join(bad))

    @property
    def needs_frames(self) -> bool:
        return max(self.image, self.per, self.mouth, self.sync) > 0


def edtalk_bank_reader(animator: nn.Module) -> Callable[[Tensor], dict[str, Tensor]]:
    """Frames ``(N, 3, S, S)`` in [-1, 1] -> the frozen EDTalk's coefficients ``{mouth, pose, expression}``."""
    from ..backbones.edtalk import BANKS

    def read(frames: Tensor) -> dict[str, Tensor]:
        p = next(animator.parameters())
        latent = animator.encode(frames.to(device=p.device, dtype=p.dtype)).latent
        return {bank: animator.bank_coefficients(latent, bank)[1] for bank in BANKS}

    return read


def render_mouth(animator: nn.Module, identity: Tensor, batch: dict[str, Tensor], mouth: Tensor) -> Tensor:
    """The frozen EDTalk's frames for predicted ``mouth (B, T, 20)``: source ``identity (B, 3, S, S)``,
    pose/expression from ``batch``; ``(B, T, 3, S, S)``."""
    b, t = mouth.shape[:2]
    src = identity.repeat_interleave(t, dim=0)
    coeffs = {"mouth": mouth.reshape(b * t, -1), "pose": batch["pose"].reshape(b * t, -1),
              "expression": batch["expression"].reshape(b * t, -1)}
    out = animator.reenact(src, {}, coeffs)
    return out.reshape(b, t, *out.shape[1:])


def face_crops(frames: Tensor, box: tuple[float, float, float, float], side: int = 96) -> Tensor:
    """``(B, T, 3, S, S)`` -> the ``box`` (fractions of the frame) resized to ``(B, T, 3, side, side)``."""
    b, t, c, h, w = frames.shape
    l, tp, r, bt = box
    x = frames.reshape(b * t, c, h, w)[:, :, int(tp * h):max(int(bt * h), int(tp * h) + 1),
                                       int(l * w):max(int(r * w), int(l * w) + 1)]
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x.reshape(b, t, c, side, side)


def audio_lip_losses(pred: Tensor, batch: dict[str, Tensor], s: AudioLipSettings, *,
                     animator: nn.Module | None = None, perceptual: nn.Module | None = None,
                     syncnet: nn.Module | None = None) -> dict[str, Tensor]:
    """The weighted terms of the table above for one batch (only those with a non-zero weight).

    Args:
        pred: ``(B, T, 20)`` predicted mouth coefficients.
        batch: :meth:`AudioWindows.batch` output (``mouth``, ``pose``, ``expression``, ``mel``; with the
            image terms also ``frames``, ``identity_frame``).
    """
    from .syncnet import sync_loss

    target = batch["mouth"]
    out = {}
    if s.coef > 0:
        out["coef"] = s.coef * F.mse_loss(pred, target)
    if s.smooth > 0:
        out["smooth"] = s.smooth * F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
    if not s.needs_frames:
        return out
    if animator is None:
        raise InputError("the image and sync terms of edtalk-audio-lip render through the animator: pass it")
    render = render_mouth(animator, batch["identity_frame"], batch, pred)
    real = batch["frames"]
    if s.image > 0:
        out["image"] = s.image * (render - real).abs().mean()
    if s.per > 0 and perceptual is not None:
        out["per"] = s.per * perceptual(render.flatten(0, 1), real.flatten(0, 1))
    if s.mouth > 0 or s.sync > 0:
        crop_fake, crop_real = face_crops(render, s.face_box), face_crops(real, s.face_box)
        if s.mouth > 0:
            out["mouth"] = s.mouth * (crop_fake - crop_real).abs().mean()
        if s.sync > 0:
            if syncnet is None:
                raise InputError("sync weight > 0 needs SyncNet (settings.syncnet)")
            mid = batch["mel"][:, batch["mel"].shape[1] // 2]
            out["sync"] = s.sync * sync_loss(syncnet, mid, crop_fake)
    return out


def prepare_audio_lip_model(model: nn.Module, s: AudioLipSettings) -> nn.Module:
    """Load the Wav2Lip audio encoder when asked and set ``requires_grad``: everything trains, or only
    the linear map (``to_mouth``) when the encoder is frozen (the official setting, which starts the
    encoder from Wav2Lip's).

    Raises:
        InputError / CheckpointError: a missing or unfitting Wav2Lip file.
    """
    if s.wav2lip:
        load_wav2lip_encoder(model, s.wav2lip)
    freeze = bool(s.wav2lip) if s.freeze_encoder is None else s.freeze_encoder
    model.requires_grad_(True)
    if freeze:
        model.blocks.requires_grad_(False)
    return model


def load_wav2lip_encoder(model: nn.Module, path: str) -> None:
    """Copy Wav2Lip's ``audio_encoder.*`` weights (``state_dict``, optional ``module.`` prefix) into ``model.blocks``."""
    from ..backbones.official import read_official_checkpoint
    from ..errors import CheckpointError

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


def _train_mode(model: nn.Module) -> None:
    """Train mode, with a frozen encoder kept in eval mode (its BatchNorm statistics stay fixed, so the
    features the linear map learns from are the ones it sees at inference)."""
    model.train()
    if not any(p.requires_grad for p in model.blocks.parameters()):
        model.blocks.eval()


def _aux_networks(s: AudioLipSettings, device) -> tuple[nn.Module | None, nn.Module | None]:
    from .config import expand_path
    from .losses import PerceptualLoss
    from .syncnet import load_syncnet

    syncnet = None
    if s.sync > 0:
        if not s.syncnet:
            raise InputError("edtalk-audio-lip: the sync loss (weight "
                             f"{s.sync:g}) needs SyncNet weights: give syncnet=<Wav2Lip's lipsync_expert.pth or "
                             "EDTalk's ckpt/checkpoint.pth>, or set sync=0 to train without L_sync")
        syncnet = load_syncnet(expand_path(s.syncnet), device)
    perceptual = None
    if s.per > 0 and s.needs_frames:
        if s.vgg_weights:
            perceptual = PerceptualLoss(expand_path(s.vgg_weights)).to(device)
        else:
            warnings.warn("edtalk-audio-lip: no VGG19 weights (vgg_weights): the perceptual term is left out",
                          UserWarning, stacklevel=3)
    return syncnet, perceptual


def train_audio_lip(model: nn.Module, animator: nn.Module, data: AudioWindows, s: AudioLipSettings, *,
                    output: str | Path | None = None, log: Callable[[int, dict[str, float]], None] | None = None
                    ) -> list[dict[str, float]]:
    """Train ``model`` (an :class:`~plugtalk.backbones.EDTalkAudio`) on ``data``'s training windows.

    ``animator`` (EDTalk) stays frozen in eval mode; the audio model trains in train mode (its
    BatchNorm statistics follow the data, as in the official script).  With ``output`` the result is
    written atomically to ``<output>/audio_lip.safetensors``.

    Returns:
        one ``{term: value}`` dict per step (weighted terms and ``total``).

    Raises:
        InputError: bad settings, missing SyncNet weights while ``sync > 0``, or fewer training windows
            than one batch.
        TrainingDiverged: a non-finite loss or gradient (no update is applied).
    """
    from .trainer import TrainingDiverged

    s.check()
    device = next(model.parameters()).device
    prepare_audio_lip_model(model, s)
    animator.requires_grad_(False).eval()
    syncnet, perceptual = _aux_networks(s, device)
    if data.length != s.window:
        raise InputError(f"edtalk-audio-lip: the data's windows have {data.length} frames, settings.window is {s.window}")
    starts = data.starts("train")
    if len(starts) < s.batch_size:
        raise InputError(f"edtalk-audio-lip: {len(starts)} training windows, fewer than one batch of {s.batch_size}")
    if s.init_at_mean and model.to_mouth.bias.requires_grad:
        with torch.no_grad():  # (official: default Linear init, bias 0)
            model.to_mouth.weight.zero_()
            model.to_mouth.bias.copy_(torch.cat([c.coefficients["mouth"][:data._cut(c)] for c in data.clips]).mean(0))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=s.lr, betas=s.betas)
    g = torch.Generator().manual_seed(s.seed)
    history = []
    _train_mode(model)
    for step in range(1, s.steps + 1):
        pick = torch.randint(len(starts), (s.batch_size,), generator=g).tolist()
        batch = {k: v.to(device) for k, v in data.batch([starts[i] for i in pick], frames=s.needs_frames).items()}
        terms = audio_lip_losses(model(batch["mel"]), batch, s, animator=animator, perceptual=perceptual,
                                 syncnet=syncnet)
        total = sum(terms.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, s.grad_clip)
        bad = [k for k, v in {**terms, "total": total, "grad_norm": norm}.items() if not torch.isfinite(v)]
        if bad:
            raise TrainingDiverged(f"edtalk-audio-lip step {step}: non-finite {', '.join(bad)}", step, bad)
        opt.step()
        record = {k: float(v.detach()) for k, v in terms.items()} | {"total": float(total.detach())}
        history.append(record)
        if log is not None:
            log(step, record)
    if s.bn_windows and any(p.requires_grad for p in model.blocks.parameters()):
        recalibrate_batchnorm(model, data, s.bn_windows, device)
    model.eval()
    if output is not None:
        model.save_pretrained(Path(output) / "audio_lip.safetensors", {"stage": "edtalk-audio-lip", "steps": s.steps})
    return history


def recalibrate_batchnorm(model: nn.Module, data: AudioWindows, windows: int, device, chunk: int = 16) -> None:
    """Re-estimate the BatchNorm running statistics of the trained weights on up to ``windows`` training
    windows (``torch.optim.swa_utils.update_bn``): the running averages collected while the weights moved
    lag behind them, and eval mode reads them."""
    from torch.optim.swa_utils import update_bn

    starts = data.starts("train", stride=data.length)[:windows]
    batches = [data.batch(starts[i:i + chunk])["mel"] for i in range(0, len(starts), chunk)]
    update_bn(batches, model, device=device)


@torch.no_grad()
def mouth_errors(model: nn.Module, data: AudioWindows, split: str = "heldout", batch_size: int = 64) -> dict[str, float]:
    """Mean squared mouth-coefficient error on ``split``'s windows (non-overlapping): ``model`` (in eval
    mode) and the constant predictor ``mean`` (the training windows' mean coefficients)."""
    starts = data.starts(split, stride=data.length)
    if not starts:
        raise InputError(f"no {split} windows of {data.length} frames")
    train_mean = torch.cat([c.coefficients["mouth"][:data._cut(c)] for c in data.clips]).mean(0)
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
