"""EDTalk's Audio-to-Pose normalizing flow ``phi_p`` (Tan et al., ECCV 2024, suppl. 1.1, Eqs. 1-2).

A conditional normalizing flow over sequences of pose-bank weights ``W^p (B, T, 6)``: K flow steps,
each an actnorm (``h' = (beta - mu) / delta``), an invertible 1x1 convolution (``h'' = W h'``) and a
transformer affine coupling conditioned on the audio features ``f^a_{1:N}``
(``t, s = F(h''_1, f^a); h = (h''_2 + t) * s``), see :mod:`plugtalk.layers.normalizing_flow`.
The audio features come from the model's own small convolutional audio encoder ``E_a`` (one
80 x 16 log-mel window per video frame, as :func:`plugtalk.io.audio.audio_mel_windows` cuts them)
or are given directly.

Direction: :meth:`EDTalkPoseFlow.forward` maps pose weights to the latent (the paper's
``z = phi_p^{-1}(W^p, f^a)``, Eq. 1) and :meth:`~EDTalkPoseFlow.inverse` / :meth:`~EDTalkPoseFlow.sample`
map a latent to pose weights (``W^p = phi_p(z, f^a)``, Eq. 2); ``p_Z`` is a standard normal.
EDTalk released no code or weights for this model: the architecture follows the text; sizes are ours.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from ..weights.configurable import ConfigDict
from ..errors import InputError
from ..layers.normalizing_flow import ActNorm, ConditionalCoupling, InvertibleLinear
from .base import Backbone
from .official import OfficialKeyMap

__all__ = ["EDTalkPoseFlowConfig", "EDTalkPoseFlow", "FlowAudioEncoder"]

_LIMITS = {"pose_dim": (2, 64), "audio_dim": (1, 1024), "steps": (1, 32), "hidden": (8, 1024), "heads": (1, 16),
           "layers": (1, 8), "mel_bins": (16, 256), "window_frames": (4, 64), "encoder_width": (4, 256)}


@dataclasses.dataclass
class EDTalkPoseFlowConfig(ConfigDict):
    """Flow geometry.  ``pose_dim`` is EDTalk's pose bank (6); the rest are plugtalk's choices.

    Raises (on construction): ``ValueError`` for a size outside its bound or ``hidden`` not divisible
    by ``heads``.
    """

    pose_dim: int = 6           #: channels of W^p
    audio_dim: int = 128        #: width of the audio features f^a
    steps: int = 4              #: flow steps K
    hidden: int = 128           #: coupling transformer width
    heads: int = 4              #: attention heads
    layers: int = 2             #: transformer encoder layers per coupling
    clamp: float = 2.0          #: bound of |log s| in the couplings
    mel_bins: int = 80          #: mel window height (EDTalk: 80)
    window_frames: int = 16     #: mel window width (EDTalk: 16 = 0.2 s)
    encoder_width: int = 32     #: channels of the audio encoder's first conv (doubled twice)

    def __post_init__(self) -> None:
        for name, (lo, hi) in _LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if not 0.1 <= float(self.clamp) <= 10.0:
            raise ValueError(f"clamp must be in [0.1, 10], got {self.clamp!r}")


class FlowAudioEncoder(nn.Module):
    """``E_a``: mel windows ``(N, 1, mel_bins, window_frames)`` in [-4, 4] -> ``(N, audio_dim)``.

    Three strided 3x3 convs with ReLU (no batch statistics, so a window's feature never depends on
    the rest of the batch), global average pooling and a linear map.
    """

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        w = width
        self.convs = nn.Sequential(
            nn.Conv2d(1, w, 3, (2, 1), 1), nn.ReLU(), nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.proj = nn.Linear(4 * w, out_dim)

    def forward(self, windows: Tensor) -> Tensor:
        return self.proj(self.convs(windows).flatten(1))


class PoseFlowStep(nn.Module):
    """actnorm -> invertible 1x1 conv -> conditional coupling (one of the K steps)."""

    def __init__(self, c: EDTalkPoseFlowConfig):
        super().__init__()
        self.actnorm = ActNorm(c.pose_dim)
        self.mix = InvertibleLinear(c.pose_dim)
        self.coupling = ConditionalCoupling(c.pose_dim, c.audio_dim, c.hidden, c.heads, c.layers, c.clamp)

    def forward(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        x, a = self.actnorm(x)
        x, b = self.mix(x)
        x, c = self.coupling(x, condition)
        return x, a + b + c

    def inverse(self, y: Tensor, condition: Tensor) -> Tensor:
        return self.actnorm.inverse(self.mix.inverse(self.coupling.inverse(y, condition)))


class EDTalkPoseFlow(Backbone):
    """Audio-conditioned normalizing flow over pose-bank weight sequences (see the module docstring).

    Shapes: pose ``(B, T, pose_dim)`` (EDTalk pose-bank coefficients, unbounded, typically |w| < 1);
    ``audio`` either mel windows ``(B, T, 1, 80, 16)`` / ``(B, T, 80, 16)`` in [-4, 4] or features
    ``(B, T, audio_dim)``; latent ``z (B, T, pose_dim)`` ~ N(0, I).  Log-densities are in nats.
    """

    name = "edtalk-pose-flow"
    config_class = EDTalkPoseFlowConfig

    def __init__(self, config: EDTalkPoseFlowConfig | None = None):
        super().__init__(config or EDTalkPoseFlowConfig())
        c = self.config
        self.audio_encoder = FlowAudioEncoder(c.encoder_width, c.audio_dim)
        self.flow_steps = nn.ModuleList(PoseFlowStep(c) for _ in range(c.steps))

    @property
    def image_size(self) -> int:
        return 0

    # -- inputs -------------------------------------------------------------------------------------
    def condition(self, audio: Tensor) -> Tensor:
        """Audio features ``(B, T, audio_dim)`` from mel windows (through ``E_a``) or passed through.

        Raises:
            InputError: a shape that is neither mel windows nor features of this model.
        """
        c = self.config
        if audio.ndim == 3 and audio.shape[-1] == c.audio_dim:
            return audio
        if audio.ndim == 4:
            audio = audio.unsqueeze(2)
        if audio.ndim != 5 or tuple(audio.shape[2:]) != (1, c.mel_bins, c.window_frames):
            raise InputError(f"EDTalkPoseFlow: audio must be mel windows (B, T, 1, {c.mel_bins}, {c.window_frames}) "
                             f"or features (B, T, {c.audio_dim}), got {tuple(audio.shape)}")
        b, t = audio.shape[:2]
        return self.audio_encoder(audio.reshape(b * t, *audio.shape[2:])).reshape(b, t, -1)

    def _check_pose(self, x: Tensor, what: str) -> None:
        if x.ndim != 3 or x.shape[-1] != self.config.pose_dim or x.shape[1] < 1:
            raise InputError(f"EDTalkPoseFlow: {what} must be (B, T, {self.config.pose_dim}) with T >= 1, "
                             f"got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise InputError(f"EDTalkPoseFlow: {what} contains NaN or inf")

    # -- the flow -----------------------------------------------------------------------------------
    def forward(self, pose: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        """Pose weights -> latent (Eq. 1): ``(z (B, T, D), log|det dz/dx| (B,))``.

        Raises:
            InputError: bad shapes, NaN/inf poses, or audio whose batch/length differs from ``pose``.
        """
        self._check_pose(pose, "pose")
        cond = self.condition(audio)
        logdet = pose.new_zeros(pose.shape[0])
        x = pose
        for step in self.flow_steps:
            x, ld = step(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor, audio: Tensor) -> Tensor:
        """Latent -> pose weights (Eq. 2): ``(B, T, D)``.  Exact inverse of :meth:`forward`."""
        self._check_pose(z, "z")
        cond = self.condition(audio)
        x = z
        for step in reversed(self.flow_steps):
            x = step.inverse(x, cond)
        return x

    def log_likelihood(self, pose: Tensor, audio: Tensor) -> Tensor:
        """``log p(W^p | f^a)`` per sequence ``(B,)`` in nats: ``sum log N(z; 0, I) + log|det|``."""
        z, logdet = self(pose, audio)
        return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=(1, 2)) + logdet

    def sample(self, audio: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """Draw pose weights ``(B, T, D)`` for audio ``(B, T, ...)``: ``phi_p(z, f^a)``, ``z ~ N(0, t^2 I)``.

        Raises:
            InputError: ``temperature`` outside [0, 10].
        """
        if not 0.0 <= float(temperature) <= 10.0:
            raise InputError(f"EDTalkPoseFlow.sample: temperature must be in [0, 10], got {temperature!r}")
        cond = self.condition(audio)
        z = torch.randn(*cond.shape[:2], self.config.pose_dim, generator=generator, device=cond.device,
                        dtype=cond.dtype)
        return self.inverse(z * float(temperature), cond)

    @torch.no_grad()
    def initialize(self, pose: Tensor, audio: Tensor) -> None:
        """Glow's data-dependent start: each actnorm normalises its input on this data (``mu``, ``delta``
        of the first one are the training poses' mean and standard deviation, as EDTalk states)."""
        self._check_pose(pose, "pose")
        cond = self.condition(audio)
        x = pose
        for step in self.flow_steps:
            step.actnorm.initialize(x)
            x, _ = step(x, cond)

    @staticmethod
    def official_key_map(config: EDTalkPoseFlowConfig) -> OfficialKeyMap:
        """EDTalk released no Audio-to-Pose weights, so there is no official file to convert."""
        raise InputError("EDTalk's Audio-to-Pose flow has no official checkpoint; train one with the "
                         "'edtalk-audio-pose' stage")
