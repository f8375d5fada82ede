"""EDTalk's driving controls: speech driving the mouth bank (``audio``), speech driving the head pose through
the Audio-to-Pose flow (``audio-pose``) and fixed expression-bank weights (``expression-weights``), declared in
:attr:`EDTalkAdapter.controls <plugtalk.adapters.EDTalkAdapter>`.

Source: EDTalk (Tan et al., ECCV 2024), suppl. 1.1 (the pose flow: pose weights sampled given the audio),
1.2 (16 kHz, 80 mel, hop 200, window 800; 25 fps) and its audio-driven demo (3-tap Gaussian smoothing of the
mouth coefficients).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .controls import Control, ControlContext, ControlStream, constant_stream, sequence_stream

__all__ = ["parse_expression_weights", "audio_mouth_coefficients", "audio_pose_coefficients", "AUDIO_FPS", "AUDIO",
           "AUDIO_POSE", "EXPRESSION_WEIGHTS", "POSE_SEED"]

#: Video frame rate of EDTalk's audio-driven mode (its mel windows are cut per 25 fps frame).
AUDIO_FPS = 25.0
#: Seed of the pose flow's latent draw (the same speech gives the same head motion).
POSE_SEED = 0


def parse_expression_weights(value: str | os.PathLike | Sequence[float] | np.ndarray, dim: int | None = None
                             ) -> np.ndarray:
    """EDTalk expression-bank weights from a ``.npy`` file (shape ``(D,)`` or ``(1, D)``), a
    comma-separated string or a sequence of numbers.

    Returns:
        ``(1, D)`` float32.

    Raises:
        InputError: unreadable file, wrong shape (``D != dim``), or NaN / inf.
    """
    if isinstance(value, (str, os.PathLike)) and str(value).endswith(".npy"):
        p = Path(value)
        if not p.is_file():
            raise InputError(f"expression weights file {str(p)!r} does not exist")
        from ..io.arrays import load_npy

        arr = load_npy(p, "expression weights")
    elif isinstance(value, str):
        try:
            arr = np.array([float(v) for v in value.replace(" ", "").split(",") if v != ""])
        except ValueError:
            raise InputError("expression weights: expected a .npy file or comma-separated numbers, "
                             f"got {value!r}") from None
    else:
        arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"expression weights must be numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if arr.ndim == 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 1 or arr.size == 0 or (dim is not None and arr.size != dim):
        want = f"({dim},) or (1, {dim})" if dim is not None else "(D,) or (1, D)"
        raise InputError(f"expression weights: expected shape {want}, got {tuple(np.shape(arr))}")
    if not np.isfinite(arr).all():
        raise InputError("expression weights contain NaN or inf")
    return arr[None]


def audio_mouth_coefficients(audio: str | os.PathLike, audio_model: torch.nn.Module, *, fps: float = AUDIO_FPS,
                             max_frames: int | None = None, chunk: int = 256) -> Tensor:
    """EDTalk's audio-driven mouth: speech -> per-frame mouth-bank coefficients.

    Audio is read at any rate and resampled to 16 kHz; each video frame gets an 80 x 16 log-mel window
    (:func:`~plugtalk.io.audio.audio_mel_windows`: FFT window 800, hop 200; EDTalk suppl. 1.2); the
    audio model maps windows to coefficients (in chunks of ``chunk`` frames), and they are smoothed
    over time with EDTalk's normalised 3-tap Gaussian, sigma 1, zero padded
    (:func:`~plugtalk.layers.temporal.gaussian_smooth`).

    Returns:
        ``(T, mouth_dim)`` float32 on the audio model's device, ``T = floor(duration * fps)`` (at most
        ``max_frames``).

    Raises:
        InputError: missing, empty or unreadable audio, or audio shorter than one frame.
    """
    from ..layers.temporal import gaussian_smooth

    windows = _mel_windows(audio, fps, max_frames)
    p = next(audio_model.parameters())
    out = []
    with torch.inference_mode():
        for s in range(0, len(windows), chunk):
            w = torch.from_numpy(windows[s:s + chunk]).to(device=p.device, dtype=p.dtype)
            out.append(audio_model(w[None])[0].float())
    return gaussian_smooth(torch.cat(out), 3, 1.0)


def _mel_windows(audio: str | os.PathLike, fps: float, max_frames: int | None) -> np.ndarray:
    """``(T, 1, 80, 16)`` EDTalk mel windows, one per video frame of the sound (at most ``max_frames``)."""
    from ..io.audio import EDTALK_MEL, audio_mel_windows, load_audio

    samples = load_audio(audio, sample_rate=EDTALK_MEL.sample_rate)
    n = int(len(samples) * fps / EDTALK_MEL.sample_rate)
    if max_frames is not None:
        n = min(n, max_frames)
    return audio_mel_windows(samples, EDTALK_MEL.sample_rate, fps, num_frames=n if n >= 1 else None)


def audio_pose_coefficients(audio: str | os.PathLike, flow: torch.nn.Module, *, fps: float = AUDIO_FPS,
                            max_frames: int | None = None, temperature: float = 1.0, seed: int = POSE_SEED) -> Tensor:
    """EDTalk's audio-driven head pose: speech -> per-frame pose-bank coefficients sampled from the
    Audio-to-Pose flow (:class:`~plugtalk.backbones.EDTalkPoseFlow`, ``phi_p(z, f^a)`` with ``z ~ N(0, t^2 I)``
    drawn from ``seed``) over the whole sequence at once.

    Returns:
        ``(T, pose_dim)`` float32 on the flow's device.

    Raises:
        InputError: missing, empty or unreadable audio, or audio shorter than one frame.
    """
    windows = _mel_windows(audio, fps, max_frames)
    p = next(flow.parameters())
    g = torch.Generator(device=p.device).manual_seed(seed)
    with torch.inference_mode():
        mel = torch.from_numpy(windows).to(device=p.device, dtype=p.dtype)[None]
        return flow.sample(mel, temperature, generator=g)[0].float()


def _speech_stream(value, ctx: ControlContext, keyword: str, coefficients, needs: str, what: str) -> ControlStream:
    """A per-frame ``keyword`` sequence from the speech file ``value`` through the control's companion model
    (``coefficients(path, model, fps=, max_frames=)``).

    Raises:
        InputError: no companion model (``needs`` says which), or a missing audio file.
    """
    if ctx.companion is None:
        raise InputError(needs)
    if not Path(value).exists():
        raise InputError(f"audio file {str(value)!r} does not exist")
    fps = ctx.fps or AUDIO_FPS
    values = coefficients(value, ctx.companion, fps=fps, max_frames=ctx.max_frames)
    return sequence_stream(keyword, values.to(device=ctx.device, dtype=ctx.dtype), f"{what} {Path(value).name}",
                           fps=fps)


def _read_audio(value, ctx: ControlContext) -> ControlStream:
    return _speech_stream(value, ctx, "mouth_coefficients", audio_mouth_coefficients,
                          "the audio control needs EDTalk's audio-to-mouth model (companion 'edtalk-audio': "
                          "--audio-checkpoint Audio2Lip.pt, or companions={'edtalk-audio': model})", "audio")


def _read_audio_pose(value, ctx: ControlContext) -> ControlStream:
    return _speech_stream(value, ctx, "pose_coefficients", audio_pose_coefficients,
                          "the audio-pose control needs EDTalk's Audio-to-Pose flow (companion 'edtalk-pose-flow': "
                          "--companion edtalk-pose-flow=audio_pose.safetensors, as plugtalk train writes it)",
                          "pose sampled from audio")


def _read_expression_weights(value, ctx: ControlContext) -> ControlStream:
    dim = getattr(ctx.adapter.backbone.config, "expression_dim", None)
    weights = torch.from_numpy(parse_expression_weights(value, dim)).to(device=ctx.device, dtype=ctx.dtype)
    return constant_stream({"expression_weights": weights}, "expression weights")


#: Speech drives the mouth bank; the request's sound feeds it when it is not given separately.
AUDIO = Control("audio", "speech driving the mouth bank (any sound file or media file with sound; resampled to "
                "16 kHz, 25 fps)", _read_audio, replaces="mouth", companion="edtalk-audio", from_sound=True)
#: Speech drives the head pose through the Audio-to-Pose flow (given explicitly; not fed from the request's sound).
AUDIO_POSE = Control("audio-pose", "speech driving the head pose: a pose sequence sampled from EDTalk's Audio-to-Pose "
                     "flow (any sound file; 25 fps)", _read_audio_pose, replaces="pose", companion="edtalk-pose-flow")
#: Fixed weights of the expression bank for every frame.
EXPRESSION_WEIGHTS = Control("expression-weights", "expression-bank weights: a .npy of shape (10,) or (1, 10), or "
                             "comma-separated numbers", _read_expression_weights, value="file-or-text",
                             replaces="expression")
