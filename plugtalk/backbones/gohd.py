"""GoHD's face animator (Zhou et al., "GoHD: Gaze-oriented and Highly Disentangled Portrait Animation with
Rhythmic Poses and Realistic Expressions", AAAI 2025, Sec. 3.1 "Latent navigation animator").

LIA with the driving-image branch replaced by a coefficient branch::

    w_s, pyramid = E(source)                          # LIA's appearance encoder
    h = M(window)                                      # 1-D conv "mapping network" over a coefficient window
    alpha = MLP([w_s, h])                              # linear motion head, 1024 -> ... -> 20
    image = G(w_s + alpha Q^T, pyramid)                # LIA's flow decoder + SFT blocks at >= 64 px

``window`` is ``(B, 72, T)``: for each of ``T >= 25`` frames a 72-d vector, expression 0-63 | pose 64-69
(three angles, three translations) | gaze 70-71 (yaw, pitch; radians).  Only absolute motion exists
(the official forward never passes the source motion code a relative step would need).  Building windows
from per-frame sequences and reading coefficient files: :mod:`plugtalk.backbones.gohd_coefficients`.

The official checkpoint is ``FaceAnimator_GoHD.pt`` (github.com/Jia1018/GoHD), state dict under ``gen_pose``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from ..layers import MotionDictionary, StyledConv, linear_stack
from .base import Backbone, BackboneConfig, Encoding, check_image
from .encoder import PyramidEncoder
from .keymaps import styled_conv_keys, encoder_keys, linear_stack_keys, synthesis_keys
from .official import OfficialKeyMap
from .reenactment import Reenactment
from .synthesis import FlowSynthesis, SynthesisOutput

__all__ = ["GoHDConfig", "GoHD", "CoefficientMapping", "SFTBlock", "SFTFlowSynthesis", "COEFFICIENT_DIM",
           "EXPRESSION", "POSE", "GAZE", "check_coefficients"]

#: Channels of one frame's control vector, fixed by the trained weights (official ``--gen_with_gaze``).
COEFFICIENT_DIM = 72
EXPRESSION = slice(0, 64)   #: Deep3DFaceRecon expression coefficients (x 1.5 in the official demo)
POSE = slice(64, 70)        #: yaw/pitch/roll angles (rad) then x/y/z translation (x 1.2 in the official demo)
GAZE = slice(70, 72)        #: L2CS gaze: channel 70 horizontal (yaw), 71 vertical (pitch), radians


@dataclasses.dataclass
class GoHDConfig(BackboneConfig):
    """GoHD animator geometry; defaults are the official 256 px model (``inference.py``)."""

    motion_dim: int = 20       #: motion-dictionary directions
    mlp_depth: int = 5         #: EqualLinear layers of the motion head (2*style_dim -> 4 x style_dim -> motion_dim)
    mapping_layers: int = 3    #: dilated residual units of the coefficient mapping network
    sft_levels: int = 3        #: SFT blocks on the warped features of the finest levels (official: 64, 128, 256 px)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.motion_dim <= self.style_dim:
            raise ValueError(f"motion_dim must be in [1, style_dim={self.style_dim}], got {self.motion_dim}")
        if self.mlp_depth < 1 or self.mapping_layers < 0:
            raise ValueError(f"mlp_depth must be >= 1 and mapping_layers >= 0, got {self.mlp_depth}, "
                             f"{self.mapping_layers}")
        if not 0 <= self.sft_levels <= len(self.pyramid_resolutions):
            raise ValueError(f"sft_levels must be in [0, {len(self.pyramid_resolutions)}] (the pyramid levels "
                             f"{self.pyramid_resolutions}), got {self.sft_levels}")

    @property
    def min_window(self) -> int:
        """Shortest coefficient window the mapping network accepts (25 officially)."""
        return CoefficientMapping.window_for(self.mapping_layers)


def check_coefficients(x: Any, min_window: int, batch: int | None = None, name: str = "coefficients") -> Tensor:
    """Validate a coefficient window ``(B, 72, T)`` with ``T >= min_window``, finite floats.

    Raises:
        InputError: not a float tensor, wrong rank or channel count, a window that is too short, a batch
            size that differs from the source's, or NaN / inf values - naming the expected shape.
    """
    want = f"(B, {COEFFICIENT_DIM}, T>={min_window}) (expression 0-63 | pose 64-69 | gaze 70-71, time last)"
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor {want}, got "
                         f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.ndim != 3 or x.shape[1] != COEFFICIENT_DIM:
        raise InputError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if x.shape[2] < min_window:
        raise InputError(f"{name}: the window has {x.shape[2]} frames; the mapping network needs {want} "
                         "(build windows with plugtalk.backbones.gohd_coefficients.coefficient_windows)")
    if batch is not None and x.shape[0] != batch:
        raise InputError(f"{name}: batch size {x.shape[0]} does not match the source batch size {batch}")
    if not torch.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or inf")
    return x


class CoefficientMapping(nn.Module):
    """GoHD's mapping network: ``(B, C, T) -> (B, width)`` (official ``MappingNet``).

    Valid (unpadded) 1-D convolutions: a kernel-7 conv, then residual units
    ``conv_k3_d3(leaky_relu_0.1(h)) + h[..., 3:-3]`` (the residual is the pre-activation, centre-cropped),
    then the mean over the remaining ``T - 6 - 6 * layers`` positions (the paper says max pooling; the
    code averages).  Hence ``T >= 7 + 6 * layers``.  Plain ``nn.Conv1d`` layers (no equalised lr).
    """

    KERNEL, UNIT_KERNEL, DILATION, SLOPE = 7, 3, 3, 0.1

    def __init__(self, in_channels: int, width: int, layers: int = 3):
        super().__init__()
        self.first = nn.Conv1d(in_channels, width, self.KERNEL)
        self.units = nn.ModuleList(nn.Conv1d(width, width, self.UNIT_KERNEL, dilation=self.DILATION)
                                   for _ in range(layers))

    @classmethod
    def window_for(cls, layers: int) -> int:
        return cls.KERNEL + layers * cls.DILATION * (cls.UNIT_KERNEL - 1)

    def forward(self, x: Tensor, taps: dict[str, Tensor] | None = None) -> Tensor:
        """``x (B, C, T)`` -> embedding ``(B, width)``; ``taps`` (if given) receives ``first`` and ``pool_in``."""
        h = self.first(x)
        if taps is not None:
            taps["first"] = h
        crop = self.DILATION * (self.UNIT_KERNEL - 1) // 2
        for conv in self.units:
            h = conv(F.leaky_relu(h, self.SLOPE)) + h[..., crop:h.shape[-1] - crop]
        if taps is not None:
            taps["pool_in"] = h
        return h.mean(dim=-1)


class SFTBlock(nn.Module):
    """Spatial feature transform on a warped source feature: ``f + f * scale(f) + shift(f)``.

    Each branch: 3x3 :class:`~plugtalk.layers.StyledConv` (style = the decoder latent), LeakyReLU(0.2)
    without gain, plain 3x3 ``nn.Conv2d``.  Shapes: ``f (B, C, H, W)``, ``style (B, style_dim)`` ->
    ``(out, scale, shift)``, each ``(B, C, H, W)`` (official ``Fuse_sft_block``).
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.scale_style = StyledConv(channels, channels, 3, style_dim)
        self.scale_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.shift_style = StyledConv(channels, channels, 3, style_dim)
        self.shift_conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, f: Tensor, style: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        scale = self.scale_conv(F.leaky_relu(self.scale_style(f, style), 0.2))
        shift = self.shift_conv(F.leaky_relu(self.shift_style(f, style), 0.2))
        return f + (f * scale + shift), scale, shift


class SFTFlowSynthesis(FlowSynthesis):
    """LIA's :class:`FlowSynthesis` with an :class:`SFTBlock` on the warped feature of each of the
    ``config.sft_levels`` finest levels, returning the RGB of every scale.

    At an SFT scale, with ``x`` the decoder state entering the flow head, ``w`` the masked warped
    feature and ``b = w + x (1 - mask)`` the flow head's blend: ``w' = SFT(w)`` feeds the RGB head and
    the next state is ``w' + x (1 - b)`` - the official code puts the blend where a mask would be
    expected; the trained weights depend on it, so it is reproduced as is.
    """

    def __init__(self, config: GoHDConfig):
        super().__init__(config)
        self.first_sft = len(config.pyramid_resolutions) - config.sft_levels
        self.sft = nn.ModuleList(SFTBlock(config.channels(r), config.style_dim)
                                 for r in config.pyramid_resolutions[self.first_sft:])

    def forward(self, latent: Tensor, pyramid, taps: dict[str, Tensor] | None = None,
                return_intermediates: bool = False) -> Tensor | SynthesisOutput:
        """``latent (B, style_dim)``, source ``pyramid`` (coarse to fine) -> ``(B, 3, S, S)`` (no tanh).

        ``taps`` (if given) receives ``rgb.{i}`` (coarse to fine) and ``sft.{j}.{warped,blend,scale,shift,
        out,state}``.
        """
        b = latent.shape[0]
        self.check_pyramid(pyramid, b)
        x = self.conv_in(self.const.unsqueeze(0).expand(b, -1, -1, -1), latent)
        rgb = raw = None
        flows = []
        for i, (level, feature) in enumerate(zip(self.levels, pyramid)):
            x = level.conv(level.up(x, latent), latent)
            step = level.flow(x, latent, feature, raw)
            raw, warped = step.raw, step.warped
            j = i - self.first_sft
            if j >= 0:
                warped, scale, shift = self.sft[j](step.warped, latent)
                state = warped + x * (1.0 - step.state)
                if taps is not None:
                    taps.update({f"sft.{j}.warped": step.warped, f"sft.{j}.blend": step.state,
                                 f"sft.{j}.scale": scale, f"sft.{j}.shift": shift, f"sft.{j}.out": warped,
                                 f"sft.{j}.state": state})
                x = state
            else:
                x = step.state
            rgb = level.rgb(warped, rgb)
            flows.append(raw)
            if taps is not None:
                taps[f"rgb.{i}"] = rgb
        if return_intermediates:
            return SynthesisOutput(rgb, tuple(flows), tuple(pyramid))
        return rgb


class GoHD(Backbone):
    """GoHD face animator: source image + coefficient window -> image.

    Submodules: ``encoder`` (:class:`PyramidEncoder`), ``mapping`` (:class:`CoefficientMapping`),
    ``motion_mlp`` (``[w_s, h] -> alpha``), ``dictionary`` (:class:`~plugtalk.layers.MotionDictionary`),
    ``generator`` (:class:`SFTFlowSynthesis`).
    """

    name = "gohd"
    config_class = GoHDConfig

    def __init__(self, config: GoHDConfig | None = None):
        super().__init__(config or GoHDConfig())
        c = self.config
        d = c.style_dim
        self.encoder = PyramidEncoder(c)
        self.mapping = CoefficientMapping(COEFFICIENT_DIM, d, c.mapping_layers)
        self.motion_mlp = linear_stack([2 * d] + [d] * (c.mlp_depth - 1) + [c.motion_dim])
        self.dictionary = MotionDictionary(d, c.motion_dim)
        self.generator = SFTFlowSynthesis(c)

    # -- stages -------------------------------------------------------------------------------------
    def encode(self, image: Tensor) -> Encoding:
        """``(B, 3, S, S)`` in [-1, 1] -> latent ``w_s (B, style_dim)`` and pyramid (coarse to fine)."""
        return self.encoder(image)

    def embed(self, coefficients: Tensor, taps: dict[str, Tensor] | None = None) -> Tensor:
        """Coefficient window ``(B, 72, T>=25)`` -> embedding ``h (B, style_dim)`` (checked)."""
        check_coefficients(coefficients, self.config.min_window)
        return self.mapping(coefficients, taps)

    def motion_coefficients(self, source_latent: Tensor, embedding: Tensor) -> Tensor:
        """``[w_s, h]`` -> motion coefficients ``alpha (B, motion_dim)`` (linear head)."""
        return self.motion_mlp(torch.cat((source_latent, embedding), dim=-1))

    def direction(self, alpha: Tensor) -> Tensor:
        """``alpha (B, motion_dim)`` -> latent direction ``alpha @ Q^T (B, style_dim)``."""
        return self.dictionary(alpha)

    def motion(self, source_latent: Tensor, embedding: Tensor, tap=None) -> Tensor:
        """The motion stage (used by :meth:`forward` and the adapter): ``w_s + alpha Q^T`` with
        ``alpha = MLP([w_s, h])``.  ``tap(name, value) -> value`` (optional) sees ``alpha`` and ``direction``.

        Shapes: ``source_latent (B, style_dim)``, ``embedding (B, style_dim)`` -> latent ``(B, style_dim)``.
        """
        tap = tap or (lambda name, value: value)
        alpha = tap("alpha", self.motion_coefficients(source_latent, embedding))
        return source_latent + tap("direction", self.direction(alpha))

    def decode(self, latent: Tensor, pyramid, taps: dict[str, Tensor] | None = None,
               return_intermediates: bool = False):
        """Render ``latent (B, style_dim)`` from the source ``pyramid``: ``(B, 3, S, S)``."""
        return self.generator(latent, pyramid, taps=taps, return_intermediates=return_intermediates)

    # -- end to end ---------------------------------------------------------------------------------
    def forward(self, source: Tensor, coefficients: Tensor, return_intermediates: bool = False
                ) -> Tensor | Reenactment:
        """Animate ``source`` to the frame at the centre of a coefficient window.

        Args:
            source: ``(B, 3, S, S)`` in [-1, 1].
            coefficients: ``(B, 72, T)`` with ``T >= 25`` (official demo: 27, the frame +- 13);
                channels expression 0-63 | pose 64-69 | gaze 70-71, already scaled as the official demo does
                (see :mod:`plugtalk.backbones.gohd_coefficients`).
            return_intermediates: return a :class:`Reenactment` with ``source.latent``,
                ``coefficients.first`` / ``.pool_in`` / ``.embedding`` (mapping network), ``alpha``,
                ``direction``, ``latent``, ``pyramid.i``, ``flow.i``, ``rgb.i`` (RGB of each scale, coarse
                to fine; the last is the image) and ``sft.j.{warped,blend,scale,shift,out,state}``.

        Returns:
            ``(B, 3, S, S)``, roughly in [-1, 1] (not clamped; no tanh).

        Raises:
            InputError: a source or coefficient window that does not fit (shape, batch, range, NaN).
        """
        check_image(source, "source", self.config.size)
        check_coefficients(coefficients, self.config.min_window, batch=source.shape[0])
        src = self.encode(source)
        if not return_intermediates:
            return self.decode(self.motion(src.latent, self.mapping(coefficients)), src.pyramid)
        taps: dict[str, Tensor] = {}
        embedding = self.mapping(coefficients, taps)
        values = {"source.latent": src.latent, "coefficients.embedding": embedding}
        values.update({f"coefficients.{k}": v for k, v in taps.items()})
        latent = self.motion(src.latent, embedding, tap=lambda name, v: values.setdefault(name, v))
        values["latent"] = latent
        out = self.decode(latent, src.pyramid, taps=values, return_intermediates=True)
        return Reenactment.build(out, src.pyramid, values)

    # -- official checkpoints -----------------------------------------------------------------------
    @staticmethod
    def official_key_map(config: GoHDConfig) -> OfficialKeyMap:
        """``networks/generator.py: Generator_Semantic`` of Jia1018/GoHD: LIA's ``enc.net_app`` / ``enc.fc`` /
        ``dec.*`` plus ``enc.semantics_enc`` (mapping network) and ``dec.sft`` (SFT blocks)."""
        m = encoder_keys(config, "enc.net_app.", "encoder.")
        m.update(linear_stack_keys("enc.fc.", "motion_mlp.", config.mlp_depth))
        m.rename["dec.direction.weight"] = "dictionary.weight"
        m.update(synthesis_keys(config, "dec.", "generator."))
        o = "enc.semantics_enc."
        for t in ("weight", "bias"):
            m.rename[f"{o}first.0.{t}"] = f"mapping.first.{t}"
            for i in range(config.mapping_layers):
                m.rename[f"{o}encoder{i}.1.{t}"] = f"mapping.units.{i}.{t}"
        for j in range(config.sft_levels):
            o, p = f"dec.sft.{j}.", f"generator.sft.{j}."
            for branch in ("scale", "shift"):
                styled_conv_keys(m, f"{o}{branch}1.", f"{p}{branch}_style.", upsample=False)
                m.rename[f"{o}{branch}2.weight"] = f"{p}{branch}_conv.weight"
                m.rename[f"{o}{branch}2.bias"] = f"{p}{branch}_conv.bias"
        return m
