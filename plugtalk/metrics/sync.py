"""Lip-sync confidence and distance of a talking-head video against its audio, with a SyncNet.

The measure of Chung & Zisserman's SyncNet evaluation (``syncnet_python``, used as LSE-C / LSE-D by Wav2Lip
and as "Sync_conf" by EDTalk / FixTalk Tab. 3): for every window of 5 consecutive frames ``t .. t+4`` the
face embedding ``v_t`` is compared with the audio embedding of the mel window centred ``o`` frames later,
``a_{t+2+o}``, for every offset ``o`` in ``[-max_offset, max_offset]``; ``d(o)`` is the mean Euclidean distance
over the windows.  Then

* ``distance`` (LSE-D) = ``min_o d(o)``, ``offset`` = its ``argmin`` (frames; 0: in sync);
* ``confidence`` (LSE-C) = ``median_o d(o) - min_o d(o)`` (higher: the audio explains the lips better).

The network is :class:`plugtalk.train.syncnet.SyncNet` (Wav2Lip's ``lipsync_expert.pth`` or EDTalk's
``ckpt/checkpoint.pth``, user-supplied): its embeddings are unit vectors, so the numbers are on another scale
than ``syncnet_python``'s network (whose weights are not this format) and are not comparable with the
papers' Sync_conf values, only between models scored by the same file.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError

__all__ = ["sync_confidence", "MAX_OFFSET"]

#: syncnet_python's default search range (frames each way)
MAX_OFFSET = 15
#: frames SyncNet sees
WINDOW = 5


@torch.no_grad()
def sync_confidence(net, frames: np.ndarray, mel: np.ndarray, *,
                    face_box: tuple[float, float, float, float] = (0.15, 0.15, 0.85, 0.95),
                    max_offset: int = MAX_OFFSET, batch: int = 64) -> dict[str, float]:
    """Sync confidence / distance / offset of ``frames`` against ``mel`` (see the module docstring).

    Args:
        net: a loaded :class:`~plugtalk.train.syncnet.SyncNet` (eval mode), or anything with its
            ``audio_embedding(mel (B, 1, 80, 16)) -> (B, D)`` and ``face_embedding(faces (B, 15, 48, 96)) -> (B, D)``.
        frames: ``(T, H, W, 3)`` uint8 RGB aligned face crops (the animator's output).
        mel: ``(T', 1, 80, 16)`` EDTalk mel windows of the audio, one per video frame
            (:func:`plugtalk.io.audio.audio_mel_windows`); frames past the audio are not scored.
        face_box: (left, top, right, bottom) fractions of the crop SyncNet sees (resized to 96 x 96).
        max_offset: offsets searched each way, in frames, in [0, 50].
        batch: windows per network call.

    Returns:
        ``{"confidence", "distance", "offset" (frames), "windows"}``.

    Raises:
        InputError: fewer than 5 frames with audio, bad shapes, or ``max_offset`` out of range.
    """
    from ..train.syncnet import face_crops, lower_half_stack

    if not 0 <= max_offset <= 50:
        raise InputError(f"max_offset must be in [0, 50] frames, got {max_offset}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or mel.ndim != 4 or mel.shape[1:] != (1, 80, 16):
        raise InputError(f"sync_confidence needs frames (T, H, W, 3) and mel (T, 1, 80, 16), got "
                         f"{frames.shape} and {mel.shape}")
    t = min(len(frames), len(mel))
    if t < WINDOW:
        raise InputError(f"sync_confidence needs at least {WINDOW} frames with audio, got {t}")
    p = next(net.parameters(), None) if hasattr(net, "parameters") else None
    device, dtype = (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)
    video = torch.from_numpy(np.ascontiguousarray(frames[:t])).permute(0, 3, 1, 2).to(device, torch.float32)
    video = face_crops(video[None] / 127.5 - 1, face_box)[0]                 # (t, 3, 96, 96) in [-1, 1]
    audio = torch.from_numpy(np.ascontiguousarray(mel[:t])).to(device, dtype)
    n = t - WINDOW + 1
    v = torch.cat([net.face_embedding(lower_half_stack(torch.stack([video[s:s + WINDOW]
                                                                      for s in range(i, min(i + batch, n))])).to(dtype))
                   for i in range(0, n, batch)]).float()                  # v[s]: the window starting at frame s
    a = torch.cat([net.audio_embedding(audio[i:i + batch]) for i in range(0, t, batch)]).float()  # a[k]: centred on k
    dists = []
    for o in range(-max_offset, max_offset + 1):
        centre = torch.arange(len(v), device=v.device) + WINDOW // 2 + o
        ok = (centre >= 0) & (centre < t)
        dists.append(float((v[ok] - a[centre[ok]]).norm(dim=1).mean()) if ok.any() else float("nan"))
    d = np.asarray(dists)
    valid = np.isfinite(d)
    best = int(np.nanargmin(d))
    return {"confidence": float(np.median(d[valid]) - d[best]), "distance": float(d[best]),
            "offset": best - max_offset, "windows": len(v)}
