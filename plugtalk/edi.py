"""EDI - Enhanced Detail Indicator (FixTalk, Tan et al., ICCV 2025, Sec. 4.2, Fig. 4c-e, Eq. 5-9;
supplementary Sec. 1.1, Fig. 3).

In self-reenactment the driving frame's identity-carrying map ``f_4^d`` supplies details the source
lacks at extreme poses; at inference (cross-reenactment) no same-identity driving map exists.  EDI
learns to stand in for it:

* compressor ``Π`` (Sec. 4.2, suppl. 1.1: "an average pooling layer and a weighted sum"): we read this
  as adaptive average pooling of the map ``(B, C, h, w)`` to a ``g x g`` grid followed by a learnable
  softmax-weighted sum over the ``g*g`` cells, giving a token ``f_pi (B, C)``.  The cell weights start
  equal, so ``Π`` starts as global average pooling;
* a leakage memory: driven-identity memory ``M_d`` (``S x C``) and motion-source memory ``M_ms``
  (``S x (C + D)``).  An address is a softmax over the cosine similarities between a query and the
  slots (Eq. 5, 7), divided by a temperature ``tau`` (1 = the paper's plain softmax of cosines, whose
  addresses are necessarily soft: weights differ by at most ``e^2``; smaller ``tau`` sharpens them).
  A recall is ``address @ memory`` (Eq. 6, 9);
* training (:meth:`EDI.forward_train`): ``Ω_d = addr(f_pi^d, M_d)``, ``f^_d = Ω_d M_d``,
  ``L_dmem = mean_b ||f_pi^d - f^_d||_2`` (Eq. 6); ``Ω_ms = addr(f_pi^s ⊕ (z_d - z_s), M_ms)`` (Eq. 7),
  ``L_align = KL(Ω_ms || Ω_d)`` (Eq. 8), batch mean;
* inference (:meth:`EDI.forward_inference`): ``f^_s = Ω_ms M_d`` (Eq. 9) - no driving map needed;
* decompressor ``Λ`` (suppl. 1.1: "a StyleGAN2 generator ... features injected via style
  modulation"): a learned constant, style-modulated convolutions up-sampling to ``(h, w)`` and a
  modulated 1x1 projection to ``C`` channels, all styled by the recalled token through a small mapping;
* fusion (Fig. 4e): RestoreFormer-style multi-head cross-attention, queries = source-map tokens,
  keys/values = restored-map tokens, added residually to the source map.  The fused map replaces the
  identity-level skip feature the decoder receives.

Which token is decoded while training is a config option (the paper does not say): ``"driving"``
(default) decodes Eq. 6's ``f^_d``, recalled with the driving address, so the decoder learns from the
true driving detail and ``M_d`` is shaped by the rendering loss; ``"motion_source"`` decodes Eq. 9's
token, training exactly the inference path.  Other choices the paper leaves open, and ours: ``S = 256``
slots, ``g = 4``, decompressor width 256 from a 4 x 4 base with a 2-layer mapping, 8 fusion heads.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .checks import check_feature_map, check_vectors
from .configurable import ConfigDict, ConfigurableModule, config_from_dict
from .errors import InputError
from .features import FeatureSpec
from .layers import CrossAttentionBlock, EqualLinear, ModulatedConv2d, SoftmaxWeightedSum, StyledConv

__all__ = ["EDIConfig", "EDI", "EDIOutput", "Compressor", "Decompressor", "memory_logits", "memory_recall",
           "alignment_loss"]

_OWNER = "EDI"
TRAIN_RECALL = ("driving", "motion_source")


@dataclasses.dataclass
class EDIConfig(ConfigDict):
    """Geometry of an :class:`EDI`.  Defaults are FixTalk's: ``f_4`` is 512 x 32 x 32, motion code 512.

    Attributes:
        channels, height, width: shape ``(C, h, w)`` of the identity-carrying map.
        motion_dim: width ``D`` of the motion codes ``z_s, z_d`` (EMI's output).
        num_slots: ``S``, slots in each memory (not given in the paper).
        temperature: ``tau`` dividing the cosine similarities before the softmax (Eq. 5, 7 use 1).
        pool_grid: ``g``, the compressor's pooling grid (``g <= min(h, w)``).
        decoder_base: smallest side of the decompressor's learned constant; it up-samples by 2 while
            both sides stay divisible and at least this large (32 x 32 from 4: 4 -> 8 -> 16 -> 32).
        decoder_channels: width of the decompressor's convolutions.
        mapping_layers: EqualLinear layers (leaky ReLU) mapping the token to the style (0 = none).
        fusion_heads: heads of the fusion cross-attention (must divide ``channels``).
        train_recall: token decoded by :meth:`EDI.forward_train`: ``"driving"`` (Eq. 6's recall with
            the driving address) or ``"motion_source"`` (Eq. 9's recall, the inference path).
    """

    channels: int = 512
    height: int = 32
    width: int = 32
    motion_dim: int = 512
    num_slots: int = 256
    temperature: float = 1.0
    pool_grid: int = 4
    decoder_base: int = 4
    decoder_channels: int = 256
    mapping_layers: int = 2
    fusion_heads: int = 8
    train_recall: str = "driving"

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "motion_dim", "num_slots", "pool_grid", "decoder_base",
                     "decoder_channels", "fusion_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EDIConfig: {name} must be positive, got {getattr(self, name)}")
        if self.mapping_layers < 0:
            raise ValueError(f"EDIConfig: mapping_layers must be >= 0, got {self.mapping_layers}")
        if not self.temperature > 0:
            raise ValueError(f"EDIConfig: temperature must be > 0, got {self.temperature}")
        if self.pool_grid > min(self.height, self.width):
            raise ValueError(f"EDIConfig: pool_grid {self.pool_grid} exceeds the map size {self.height}x{self.width}")
        if self.channels % self.fusion_heads:
            raise ValueError(f"EDIConfig: fusion_heads ({self.fusion_heads}) must divide channels ({self.channels})")
        if self.train_recall not in TRAIN_RECALL:
            raise ValueError(f"EDIConfig: train_recall must be one of {TRAIN_RECALL}, got {self.train_recall!r}")




# -- leakage memory (Eq. 5-9) -----------------------------------------------------------------------------
def memory_logits(query: Tensor, memory: Tensor, temperature: float = 1.0) -> Tensor:
    """Address logits: cosine similarity of each query with each slot, divided by ``temperature``.

    ``softmax`` of the result is the address ``Ω`` of Eq. 5 / 7 (``temperature = 1`` there).

    Shapes: ``query (B, K)``, ``memory (S, K)`` -> ``(B, S)`` in ``[-1/tau, 1/tau]``.
    """
    return F.normalize(query, dim=-1) @ F.normalize(memory, dim=-1).t() / temperature


def memory_recall(address: Tensor, memory: Tensor) -> Tensor:
    """Recall ``sum_i address_i * m_i`` (Eq. 6 and 9).  ``address (B, S)``, ``memory (S, K)`` -> ``(B, K)``."""
    return address @ memory.to(address.dtype)


def alignment_loss(log_address_ms: Tensor, log_address_d: Tensor) -> Tensor:
    """``L_align = KL(Ω_ms || Ω_d) = sum_i Ω_ms,i (log Ω_ms,i - log Ω_d,i)``, batch mean (Eq. 8).

    Takes log-addresses (``log_softmax`` of :func:`memory_logits`) for numerical stability.

    Shapes: two ``(B, S)`` tensors -> scalar ``>= 0``, zero iff the addresses are equal.
    """
    return F.kl_div(log_address_d, log_address_ms, reduction="batchmean", log_target=True)


# -- compressor and decompressor ---------------------------------------------------------------------------
class Compressor(nn.Module):
    """Compressor ``Π``: adaptive average pooling to ``g x g`` + softmax-weighted sum over the cells.

    Shapes: ``(B, C, h, w)`` -> token ``(B, C)``.
    """

    def __init__(self, grid: int):
        super().__init__()
        self.grid = grid
        self.cell_weights = SoftmaxWeightedSum(grid * grid)

    def forward(self, x: Tensor) -> Tensor:
        cells = rearrange(F.adaptive_avg_pool2d(x, self.grid), "b c gh gw -> b (gh gw) c")
        return self.cell_weights(cells)


def _pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """StyleGAN's input normalisation of the mapping network: ``x / rms(x)`` per sample."""
    return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)


class Decompressor(nn.Module):
    """Decompressor ``Λ``: a StyleGAN2-type generator restoring a ``(C, h, w)`` map from a token.

    A learned constant at ``(h, w) / 2^k`` goes through a style-modulated 3x3 conv, then ``k`` times an
    up-sampling and a plain style-modulated 3x3 conv (:class:`~plugtalk.layers.StyledConv`), then a
    modulated (not demodulated) 1x1 projection to ``C`` channels plus bias.  Every layer is modulated by
    ``style = mapping(pixel_norm(token))``.

    Shapes: token ``(B, token_dim)`` -> ``(B, out_channels, h, w)``.
    """

    def __init__(self, token_dim: int, out_channels: int, size: tuple[int, int], base: int = 4,
                 channels: int = 256, mapping_layers: int = 2):
        super().__init__()
        h, w = size
        k = 0
        while h % 2 ** (k + 1) == 0 and w % 2 ** (k + 1) == 0 and min(h, w) // 2 ** (k + 1) >= base:
            k += 1
        self.num_upsamples = k
        self.constant = nn.Parameter(torch.randn(1, channels, h >> k, w >> k))
        self.mapping = nn.Sequential(*(EqualLinear(token_dim, token_dim, activation=True)
                                       for _ in range(mapping_layers)))
        convs = [StyledConv(channels, channels, 3, token_dim)]
        for _ in range(k):
            convs += [StyledConv(channels, channels, 3, token_dim, upsample=True),
                      StyledConv(channels, channels, 3, token_dim)]
        self.convs = nn.ModuleList(convs)
        self.to_features = ModulatedConv2d(channels, out_channels, 1, token_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, token: Tensor) -> Tensor:
        style = self.mapping(_pixel_norm(token))
        x = self.constant.to(style.dtype).expand(token.shape[0], -1, -1, -1)
        for conv in self.convs:
            x = conv(x, style)
        return self.to_features(x, style) + self.bias.to(x.dtype)[None, :, None, None]


class EDIOutput(NamedTuple):
    """What :class:`EDI` returns."""

    fused: Tensor                  #: ``(B, C, h, w)`` map replacing the identity-level skip feature
    losses: dict[str, Tensor]      #: ``{"dmem", "align"}`` (scalars) in training, ``{}`` at inference
    addresses: dict[str, Tensor]   #: ``(B, S)`` softmax addresses: ``"motion_source"`` (+ ``"driving"`` in training)
    token: Tensor                  #: ``(B, C)`` recalled token that was decoded
    restored: Tensor               #: ``(B, C, h, w)`` decompressor output before fusion


class EDI(ConfigurableModule):
    """Enhanced Detail Indicator: source map + motion codes -> detail-enhanced map (Sec. 4.2).

    Submodules / parameters: ``compressor`` (:class:`Compressor`), ``memory_d`` ``(S, C)``,
    ``memory_ms`` ``(S, C + D)``, ``decompressor`` (:class:`Decompressor`), ``fusion``
    (:class:`~plugtalk.layers.CrossAttentionBlock` without FFN).

    Example::

        edi = EDI.from_spec(backbone.feature_spec)
        out = edi(f4_source, z_s, z_d, driving_map=f4_driving)   # training: out.losses["dmem"], ["align"]
        pyramid_s[spec.identity_level] = out.fused              # then decode as usual
    """

    kind = "edi"
    config_class = EDIConfig

    def __init__(self, config: EDIConfig | None = None):
        super().__init__(config or EDIConfig())
        c = self.config
        self.compressor = Compressor(c.pool_grid)
        self.memory_d = nn.Parameter(torch.randn(c.num_slots, c.channels))
        self.memory_ms = nn.Parameter(torch.randn(c.num_slots, c.channels + c.motion_dim))
        self.decompressor = Decompressor(c.channels, c.channels, (c.height, c.width), base=c.decoder_base,
                                         channels=c.decoder_channels, mapping_layers=c.mapping_layers)
        self.fusion = CrossAttentionBlock(c.channels, c.fusion_heads, mlp_ratio=0)

    # -- construction from a backbone's description ---------------------------------------------------
    @classmethod
    def from_spec(cls, spec: FeatureSpec, **overrides: Any) -> "EDI":
        """Build for the identity level of the backbone described by ``spec`` (its channels and size)
        and ``motion_dim = spec.motion_dim``; ``overrides`` set any other :class:`EDIConfig` field.

        Raises:
            TypeError: ``spec`` is not a FeatureSpec.  ValueError: an unknown or invalid option.
        """
        if not isinstance(spec, FeatureSpec):
            raise TypeError(f"EDI.from_spec needs a FeatureSpec, got {type(spec).__name__}")
        lv = spec.identity
        values: dict[str, Any] = dict(channels=lv.channels, height=lv.height, width=lv.width,
                                      motion_dim=spec.motion_dim)
        values.update(overrides)
        return cls(config_from_dict(EDIConfig, values))

    def check_spec(self, spec: FeatureSpec) -> None:
        """Raise :class:`InputError` if this EDI cannot serve the backbone described by ``spec``."""
        c, lv = self.config, spec.identity
        problems = []
        if lv.shape != (c.channels, c.height, c.width):
            problems.append(f"identity map {(c.channels, c.height, c.width)} vs {lv.shape} (level {lv.name!r})")
        if spec.motion_dim != c.motion_dim:
            problems.append(f"motion-code width {c.motion_dim} vs {spec.motion_dim}")
        if problems:
            raise InputError(f"{_OWNER}: built for another feature spec (this EDI vs the backbone's): "
                             + "; ".join(problems))

    # -- pieces ---------------------------------------------------------------------------------------
    def _check(self, source_map: Any, z_source: Any, z_driving: Any, driving_map: Any = None) -> None:
        c = self.config
        size = (c.height, c.width)
        check_feature_map(source_map, _OWNER, "source_map", c.channels, size)
        b = source_map.shape[0]
        if driving_map is not None:
            check_feature_map(driving_map, _OWNER, "driving_map", c.channels, size, b)
        check_vectors(z_source, _OWNER, "z_source", c.motion_dim, b)
        check_vectors(z_driving, _OWNER, "z_driving", c.motion_dim, b)

    def motion_source_logits(self, f_source: Tensor, z_source: Tensor, z_driving: Tensor) -> Tensor:
        """Logits of ``Ω_ms`` (Eq. 7): query ``f_pi^s ⊕ (z_d - z_s)`` against ``M_ms``.  -> ``(B, S)``."""
        query = torch.cat([f_source, z_driving - z_source], dim=-1)
        return memory_logits(query, self.memory_ms, self.config.temperature)

    @torch.no_grad()
    def init_passthrough(self) -> "EDI":
        """Zero the fusion's output projection so the fused map starts equal to the source map.

        For retrofitting a pretrained backbone: its decoder first sees its own skip feature, and EDI's
        contribution grows from zero (the output projection gets gradients from the first step, the
        rest of EDI from the second).
        """
        self.fusion.attn.out_proj.weight.zero_()
        self.fusion.attn.out_proj.bias.zero_()
        return self

    def render(self, source_map: Tensor, token: Tensor) -> tuple[Tensor, Tensor]:
        """Decompress ``token (B, C)`` and fuse it into ``source_map (B, C, h, w)`` -> ``(fused, restored)``."""
        restored = self.decompressor(token)
        h, w = source_map.shape[-2:]
        queries = rearrange(source_map, "b c h w -> b (h w) c")
        fused = self.fusion(queries, rearrange(restored, "b c h w -> b (h w) c"))
        return rearrange(fused, "b (h w) c -> b c h w", h=h, w=w), restored

    # -- the two paths ----------------------------------------------------------------------------------
    def forward_train(self, source_map: Tensor, driving_map: Tensor, z_source: Tensor, z_driving: Tensor) -> EDIOutput:
        """Training path (self-reenactment pairs: source and driving frames of one identity).

        Args:
            source_map, driving_map: ``(B, C, h, w)`` identity-level maps of the source / driving frames.
            z_source, z_driving: ``(B, D)`` motion codes (EMI's ``z_s``, ``z_d``).

        Returns:
            :class:`EDIOutput` with ``losses = {"dmem": Eq. 6, "align": Eq. 8}`` and both addresses;
            the decoded token follows ``config.train_recall``.

        Raises:
            InputError: wrong shapes or batch sizes (message names EDI and the expected shapes).
        """
        self._check(source_map, z_source, z_driving, driving_map)
        tau = self.config.temperature
        f_s, f_d = self.compressor(source_map), self.compressor(driving_map)
        logits_d = memory_logits(f_d, self.memory_d, tau)
        logits_ms = self.motion_source_logits(f_s, z_source, z_driving)
        address_d, address_ms = logits_d.softmax(dim=-1), logits_ms.softmax(dim=-1)
        recalled_d = memory_recall(address_d, self.memory_d)
        losses = {
            "dmem": torch.linalg.vector_norm(f_d - recalled_d, dim=-1).mean(),
            "align": alignment_loss(logits_ms.log_softmax(dim=-1), logits_d.log_softmax(dim=-1)),
        }
        token = recalled_d if self.config.train_recall == "driving" else memory_recall(address_ms, self.memory_d)
        fused, restored = self.render(source_map, token)
        return EDIOutput(fused, losses, {"driving": address_d, "motion_source": address_ms}, token, restored)

    def forward_inference(self, source_map: Tensor, z_source: Tensor, z_driving: Tensor) -> EDIOutput:
        """Inference path (Eq. 9): recall from ``M_d`` with the motion-source address; no driving map.

        Args:
            source_map: ``(B, C, h, w)`` identity-level map of the source frame.
            z_source, z_driving: ``(B, D)`` motion codes.

        Returns:
            :class:`EDIOutput` with empty ``losses`` and ``addresses = {"motion_source": Ω_ms}``.

        Raises:
            InputError: wrong shapes or batch sizes.
        """
        self._check(source_map, z_source, z_driving)
        f_s = self.compressor(source_map)
        address_ms = self.motion_source_logits(f_s, z_source, z_driving).softmax(dim=-1)
        token = memory_recall(address_ms, self.memory_d)
        fused, restored = self.render(source_map, token)
        return EDIOutput(fused, {}, {"motion_source": address_ms}, token, restored)

    def forward(self, source_map: Tensor, z_source: Tensor, z_driving: Tensor,
                driving_map: Tensor | None = None) -> EDIOutput:
        """Training path when ``self.training`` and ``driving_map`` is given, else the inference path
        (in eval mode a given ``driving_map`` is shape-checked and otherwise ignored).

        Shapes: maps ``(B, C, h, w)``, codes ``(B, D)`` -> :class:`EDIOutput`.
        """
        if self.training and driving_map is not None:
            return self.forward_train(source_map, driving_map, z_source, z_driving)
        if driving_map is not None:
            self._check(source_map, z_source, z_driving, driving_map)
        return self.forward_inference(source_map, z_source, z_driving)
