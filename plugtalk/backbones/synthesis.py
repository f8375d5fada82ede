"""The LIA-family synthesis network: a StyleGAN2-like generator that, at every scale, predicts a flow
field, warps the source feature pyramid with it and renders RGB from the warped features
(LIA, Wang et al. ICLR 2022, Sec. 3.3; DPE and EDTalk reuse it; EDTalk adds expression blocks)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..layers import FlowHead, RGBHead, StyledConv
from .base import BackboneConfig

__all__ = ["FlowSynthesis", "SynthesisOutput", "ExpressionBlock", "AdaptiveInstanceNorm"]


class AdaptiveInstanceNorm(nn.Module):
    """``instance_norm(x) * (1 + gamma(e)) + beta(e)`` with gamma/beta from a one-hidden-layer MLP on ``e``.

    Shapes: ``x (B, C, H, W)``, ``e (B, cond_dim)`` -> ``(B, C, H, W)``.  Instance norm is affine-free,
    eps 1e-5, biased variance (``torch.nn.functional.instance_norm``).
    """

    def __init__(self, channels: int, cond_dim: int, hidden: int = 128):
        super().__init__()
        self.hidden = nn.Linear(cond_dim, hidden)
        self.gamma = nn.Linear(hidden, channels)
        self.beta = nn.Linear(hidden, channels)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = F.relu(self.hidden(e))
        return F.instance_norm(x, eps=1e-5) * (1 + self.gamma(h)[:, :, None, None]) + self.beta(h)[:, :, None, None]


class ExpressionBlock(nn.Module):
    """EDTalk's expression-conditioned residual block on a source feature map:
    ``x + AdaIN(conv3x3(x), e)`` (Tan et al., "EDTalk", ECCV 2024, supplementary Sec. 1).

    Shapes: ``x (B, C, H, W)``, ``e (B, cond_dim)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, channels: int, cond_dim: int, hidden: int = 128):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm = AdaptiveInstanceNorm(channels, cond_dim, hidden)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        return x + self.norm(self.conv(x), e)


class SynthesisLevel(nn.Module):
    """One octave of the synthesis network: up-sampling conv, conv, flow head, RGB head
    (and optionally an expression block applied to the source feature before warping)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, condition_dim: int | None,
                 expression_hidden: int):
        super().__init__()
        self.up = StyledConv(in_channels, out_channels, 3, style_dim, upsample=True)
        self.conv = StyledConv(out_channels, out_channels, 3, style_dim)
        self.flow = FlowHead(out_channels, style_dim)
        self.rgb = RGBHead(out_channels)
        self.expression = (ExpressionBlock(out_channels, condition_dim, expression_hidden)
                           if condition_dim is not None else None)


class SynthesisOutput(NamedTuple):
    """Synthesis result with what the probe and the parity checks look at."""

    image: Tensor                 #: ``(B, 3, S, S)``, roughly in [-1, 1] (not clamped, no tanh)
    flows: tuple[Tensor, ...]     #: raw flow fields ``(B, 3, r, r)``, coarse to fine
    features: tuple[Tensor, ...]  #: source features as warped (after expression blocks), coarse to fine


class FlowSynthesis(nn.Module):
    """``(latent (B, style_dim), pyramid) -> image (B, 3, S, S)``.

    Args:
        config: backbone geometry.
        condition_dim: if given, an :class:`ExpressionBlock` per level conditions the source
            features on an expression vector of this width (EDTalk: the 512-d expression direction);
            ``None`` for LIA / DPE.
        expression_hidden: hidden width of the expression blocks' AdaIN MLP.
    """

    def __init__(self, config: BackboneConfig, condition_dim: int | None = None, expression_hidden: int = 128):
        super().__init__()
        c = config.channels
        self.resolutions = config.pyramid_resolutions
        self.const = nn.Parameter(torch.randn(c(4), 4, 4))
        self.conv_in = StyledConv(c(4), c(4), 3, config.style_dim)
        levels, in_ch = [], c(4)
        for res in self.resolutions:
            levels.append(SynthesisLevel(in_ch, c(res), config.style_dim, condition_dim, expression_hidden))
            in_ch = c(res)
        self.levels = nn.ModuleList(levels)
        self.condition_dim = condition_dim

    def pyramid_shapes(self) -> list[tuple[int, int, int]]:
        """Expected ``(C, H, W)`` of each pyramid level, coarse to fine."""
        return [(lvl.rgb.conv.in_channels, r, r) for lvl, r in zip(self.levels, self.resolutions)]

    def check_pyramid(self, pyramid: Sequence[Tensor], batch: int) -> None:
        expected = self.pyramid_shapes()
        if len(pyramid) != len(expected):
            raise InputError(f"FlowSynthesis: expected {len(expected)} pyramid levels {expected}, got {len(pyramid)}")
        for i, (f, shape) in enumerate(zip(pyramid, expected)):
            if tuple(f.shape[1:]) != shape or f.shape[0] != batch:
                raise InputError(f"FlowSynthesis: pyramid level {i} should be ({batch}, {shape[0]}, {shape[1]}, "
                                 f"{shape[2]}), got {tuple(f.shape)}")

    def forward(self, latent: Tensor, pyramid: Sequence[Tensor], expression: Tensor | None = None,
                return_intermediates: bool = False) -> Tensor | SynthesisOutput:
        """Render.

        Args:
            latent: ``(B, style_dim)`` style for every layer (source latent + motion direction).
            pyramid: source feature maps, coarse to fine, as from :class:`PyramidEncoder`.
            expression: ``(B, condition_dim)`` condition for the expression blocks; required iff the
                network has them.
            return_intermediates: return a :class:`SynthesisOutput` instead of the image.
        """
        b = latent.shape[0]
        self.check_pyramid(pyramid, b)
        if (expression is None) != (self.condition_dim is None):
            raise InputError("FlowSynthesis: an expression vector is required exactly when the network has "
                             f"expression blocks (condition_dim={self.condition_dim})")
        x = self.conv_in(self.const.unsqueeze(0).expand(b, -1, -1, -1), latent)
        rgb = raw = None
        flows, features = [], []
        for level, feature in zip(self.levels, pyramid):
            x = level.conv(level.up(x, latent), latent)
            if level.expression is not None:
                feature = level.expression(feature, expression)
            step = level.flow(x, latent, feature, raw)
            x, raw = step.state, step.raw
            rgb = level.rgb(step.warped, rgb)
            if return_intermediates:
                flows.append(raw)
                features.append(feature)
        if return_intermediates:
            return SynthesisOutput(rgb, tuple(flows), tuple(features))
        return rgb
