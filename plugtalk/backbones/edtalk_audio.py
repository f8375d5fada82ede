"""EDTalk's audio-to-mouth model (Tan et al., ECCV 2024, Sec. 3.4 and supplementary 1.2).

A Wav2Lip-style convolutional audio encoder turns each video frame's mel window (80 mel bins x 16
frames of 12.5 ms, i.e. 0.2 s of 16 kHz audio around the frame) into a 512-d embedding, and a linear
map predicts the mouth-bank coefficients of :class:`~plugtalk.backbones.edtalk.EDTalk`.  The
official demo then smooths them over time (:func:`plugtalk.layers.gaussian_smooth`).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from ..errors import InputError
from ..weights.configurable import ConfigDict
from .base import Backbone
from .official import OfficialKeyMap

__all__ = ["EDTalkAudioConfig", "EDTalkAudio", "AudioConvBlock"]

# (in, out, kernel, stride, padding, residual) of the 13 conv blocks; an 80x16 window -> 512x1x1.
_BLOCKS = (
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
)


@dataclasses.dataclass
class EDTalkAudioConfig(ConfigDict):
    """Audio model options; defaults are the official ``Audio2Lip`` (80 x 16 mel windows)."""

    mouth_dim: int = 20
    mel_bins: int = 80
    window_frames: int = 16



class AudioConvBlock(nn.Module):
    """Conv2d + BatchNorm (+ the input, for residual blocks) followed by ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding)
        self.norm = nn.BatchNorm2d(cout)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.conv(x))
        return (y + x if self.residual else y).relu()


class EDTalkAudio(Backbone):
    """Mel windows -> EDTalk mouth coefficients.

    ``forward(mel)``: ``(B, T, 1, 80, 16)`` or ``(B, T, 80, 16)`` (log-mel in [-4, 4], EDTalk's symmetric
    normalisation) -> ``(B, T, mouth_dim)``.  BatchNorm uses its running statistics in ``eval()``.
    """

    name = "edtalk-audio"
    config_class = EDTalkAudioConfig

    def __init__(self, config: EDTalkAudioConfig | None = None):
        super().__init__(config or EDTalkAudioConfig())
        self.blocks = nn.Sequential(*(AudioConvBlock(*spec) for spec in _BLOCKS))
        self.to_mouth = nn.Linear(512, self.config.mouth_dim)

    @property
    def image_size(self) -> int:
        return 0

    def embed(self, windows: Tensor) -> Tensor:
        """``(N, 1, 80, 16)`` mel windows -> ``(N, 512)`` audio embeddings."""
        c = self.config
        if windows.ndim != 4 or tuple(windows.shape[1:]) != (1, c.mel_bins, c.window_frames):
            raise InputError(f"EDTalkAudio: expected mel windows (N, 1, {c.mel_bins}, {c.window_frames}), "
                             f"got {tuple(windows.shape)}")
        return self.blocks(windows).flatten(1)

    def forward(self, mel: Tensor) -> Tensor:
        c = self.config
        if mel.ndim == 4:
            mel = mel.unsqueeze(2)
        if mel.ndim != 5:
            raise InputError(f"EDTalkAudio: expected (B, T, 1, {c.mel_bins}, {c.window_frames}) mel windows, "
                             f"got {tuple(mel.shape)}")
        b, t = mel.shape[:2]
        return self.to_mouth(self.embed(mel.reshape(b * t, *mel.shape[2:]))).reshape(b, t, -1)

    @staticmethod
    def official_key_map(config: EDTalkAudioConfig) -> OfficialKeyMap:
        """``networks/audio_encoder.py: Audio2Lip`` (``Audio2Lip.pt``'s ``'audio2lip'``)."""
        m = OfficialKeyMap()
        for i in range(len(_BLOCKS)):
            o, p = f"audio_encoder.{i}.conv_block.", f"blocks.{i}."
            m.rename[o + "0.weight"] = p + "conv.weight"
            m.rename[o + "0.bias"] = p + "conv.bias"
            for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                m.rename[f"{o}1.{k}"] = f"{p}norm.{k}"
        m.rename["mapping.weight"] = "to_mouth.weight"
        m.rename["mapping.bias"] = "to_mouth.bias"
        return m
