"""Wav2Lip's lip-sync expert (SyncNet, Prajwal et al., ACM MM 2020) as EDTalk's sync loss uses it.

EDTalk's Audio-to-Lip training (``train/trainer_audio2mouth.py``) renders 5 consecutive frames,
crops the face of each to 96 x 96, keeps the lower half, stacks the 5 crops along channels
``(B, 15, 48, 96)`` and asks SyncNet how well they match the mel window ``(B, 1, 80, 16)``:
``L_sync = BCE(cos(a, v), 1) = -log cos(a, v)`` with ``a``/``v`` the L2-normalised audio / face
embeddings.  The weights are the user's (Wav2Lip's ``lipsync_expert.pth`` or EDTalk's
``ckpt/checkpoint.pth``: a torch file with a ``state_dict``); plugtalk ships none and downloads none.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..backbones.edtalk_audio import AudioConvBlock
from ..errors import CheckpointError, InputError

__all__ = ["SyncNet", "load_syncnet", "sync_loss", "face_crops", "lower_half_stack", "FACE_BLOCKS", "AUDIO_BLOCKS"]

# (in, out, kernel, stride, padding, residual); channel counts are scaled by ``width`` (official: 1).
FACE_BLOCKS = (
    (15, 32, 7, 1, 3, False), (32, 64, 5, (1, 2), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 2, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, 2, 1, False), (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 2, 1, False), (512, 512, 3, 1, 1, True), (512, 512, 3, 1, 1, True),
    (512, 512, 3, 2, 1, False), (512, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
)
AUDIO_BLOCKS = (
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
)
#: Face crop side and the number of frames SyncNet sees.
CROP, FRAMES = 96, 5


def _stack(spec, width: float) -> nn.Sequential:
    def ch(c: int, first: bool) -> int:
        return c if first else max(1, int(round(c * width)))

    return nn.Sequential(*(AudioConvBlock(ch(i, k == 0), ch(o, False), kk, s, p, r)
                           for k, (i, o, kk, s, p, r) in enumerate(spec)))


class SyncNet(nn.Module):
    """``forward(mel (B, 1, 80, 16), faces (B, 15, 48, 96)) -> (a, v)``, both ``(B, 512 * width)``, unit norm.

    ``width`` scales every channel count (1 = the official network; smaller ones are for tests).
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.width = float(width)
        self.face = _stack(FACE_BLOCKS, width)
        self.audio = _stack(AUDIO_BLOCKS, width)

    def audio_embedding(self, mel: Tensor) -> Tensor:
        """``(B, 1, 80, 16)`` mel windows -> unit audio embeddings ``(B, D)``."""
        return F.normalize(self.audio(mel).flatten(1), dim=1)

    def face_embedding(self, faces: Tensor) -> Tensor:
        """``(B, 15, 48, 96)`` stacked lower faces (:func:`lower_half_stack`) -> unit face embeddings ``(B, D)``."""
        return F.normalize(self.face(faces).flatten(1), dim=1)

    def forward(self, mel: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
        return self.audio_embedding(mel), self.face_embedding(faces)


def _official_names(n_face: int, n_audio: int) -> dict[str, str]:
    out = {}
    for theirs, ours, n in (("face_encoder", "face", n_face), ("audio_encoder", "audio", n_audio)):
        for i in range(n):
            out[f"{theirs}.{i}.conv_block.0.weight"] = f"{ours}.{i}.conv.weight"
            out[f"{theirs}.{i}.conv_block.0.bias"] = f"{ours}.{i}.conv.bias"
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                out[f"{theirs}.{i}.conv_block.1.{k}"] = f"{ours}.{i}.norm.{k}"
    return out


def load_syncnet(path: str | os.PathLike, device: str | torch.device = "cpu") -> SyncNet:
    """Load SyncNet weights in the official format (``torch.save({"state_dict": ...})``, keys
    ``face_encoder.*`` / ``audio_encoder.*``, an optional ``module.`` prefix), read with
    ``weights_only=True``.  The channel width is read from the file.  Returns the net frozen, in eval mode.

    Raises:
        InputError: the file does not exist.
        CheckpointError: an unreadable/unsafe file or keys/shapes that are not SyncNet's.
    """
    from ..backbones.official import read_official_checkpoint

    p = Path(path)
    if not p.is_file():
        raise InputError(f"SyncNet weights {str(p)!r} do not exist (Wav2Lip's lipsync_expert.pth or EDTalk's "
                         "ckpt/checkpoint.pth)")
    raw = read_official_checkpoint(p, "state_dict")
    raw = {k[len("module."):] if k.startswith("module.") else k: v for k, v in raw.items()}
    first = raw.get("face_encoder.0.conv_block.0.weight")
    if first is None or first.ndim != 4:
        raise CheckpointError(f"{p.name!r} is not a SyncNet checkpoint (no face_encoder.0.conv_block.0.weight)")
    net = SyncNet(width=first.shape[0] / 32)
    names = _official_names(len(FACE_BLOCKS), len(AUDIO_BLOCKS))
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise CheckpointError(f"{p.name!r}: keys SyncNet does not have, e.g. {unknown[:4]}")
    try:
        net.load_state_dict({names[k]: v for k, v in raw.items()}, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{p.name!r} does not fit SyncNet: {str(e).splitlines()[0]}") from None
    return net.requires_grad_(False).eval().to(device)


def face_crops(frames: Tensor, box: tuple[float, float, float, float], side: int = CROP) -> Tensor:
    """The face crops SyncNet sees: ``(B, T, 3, S, S)`` -> the ``box`` (left, top, right, bottom fractions of the
    frame) resized to ``(B, T, 3, side, side)``."""
    b, t, c, h, w = frames.shape
    l, tp, r, bt = box
    x = frames.reshape(b * t, c, h, w)[:, :, int(tp * h):max(int(bt * h), int(tp * h) + 1),
                                       int(l * w):max(int(r * w), int(l * w) + 1)]
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x.reshape(b, t, c, side, side)


def lower_half_stack(crops: Tensor) -> Tensor:
    """``(B, 5, 3, 96, 96)`` face crops -> SyncNet's face input ``(B, 15, 48, 96)`` (lower halves, frame-major)."""
    if crops.ndim != 5 or crops.shape[1:] != (FRAMES, 3, CROP, CROP):
        raise InputError(f"SyncNet needs (B, {FRAMES}, 3, {CROP}, {CROP}) face crops, got {tuple(crops.shape)}")
    return crops[..., CROP // 2:, :].flatten(1, 2)


def sync_loss(net: SyncNet, mel: Tensor, crops: Tensor, eps: float = 1e-7) -> Tensor:
    """EDTalk's ``L_sync``: ``mean(-log cos(a, v))`` for mel ``(B, 1, 80, 16)`` and crops ``(B, 5, 3, 96, 96)``
    (in the range the generator renders, [-1, 1], as EDTalk feeds them).  Scalar, >= 0."""
    a, v = net(mel, lower_half_stack(crops))
    d = F.cosine_similarity(a, v).clamp(eps, 1.0)
    return F.binary_cross_entropy(d.float(), torch.ones_like(d, dtype=torch.float32))
