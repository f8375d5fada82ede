"""EMI - Enhanced Motion Indicator (FixTalk, Tan et al., ICCV 2025, Sec. 4.1, Fig. 4b, Eq. 4).

A one-shot animator turns the driving frame into a motion code from its encoder latent alone, and that
code still carries the driver's identity (identity leakage).  EMI builds the motion code ``z`` from the
whole feature pyramid instead:

* an extractor ``P`` - N pre-LayerNorm residual blocks of [cross-attention + FFN] whose queries are
  learnable vectors (BLIP-2's Q-Former) and whose keys/values are the tokens of the identity-carrying
  map (FixTalk's ``f_4``: 512 x 32 x 32 at 256 px) with a fixed 2-D sine-cosine position code;
* every pyramid level global-average-pooled, ``P``'s output mean-pooled over its queries and
  (optionally) the encoder latent, each brought to width ``D`` by a linear map;
* a SUPERB-style weighted sum (one learnable scalar per input, softmax-normalised) giving ``z (B, D)``,
  which replaces the backbone's plain motion input (the latent that LIA/DPE feed their motion MLP,
  EDTalk its latent-navigation heads).

Training adds the disentanglement loss ``L_dis = max(0, cos(z_s, z_d) - xi)`` (Eq. 4) between the
codes of the source and driving frames.

Choices the paper leaves open, and ours: N = 2 layers, 8 queries of width 256, 8 heads, FFN ratio 4,
no dropout; keys/values are projected to the extractor width and the position code is added to them
(so it reaches both keys and values); ``xi = 0`` (any positive cosine is penalised).  All are config
options.  EMI imports no backbone: it is built from channel counts (an :class:`EMIConfig`) or from a
backbone's :class:`~plugtalk.features.FeatureSpec` (:meth:`EMI.from_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from torch import Tensor, nn

from .checks import check_feature_map, check_vectors
from .configurable import ConfigDict, ConfigurableModule, config_from_dict
from .errors import InputError
from .features import FeatureSpec
from .layers import CrossAttentionBlock, SoftmaxWeightedSum

__all__ = ["EMIConfig", "EMI", "disentangle_loss"]

_OWNER = "EMI"


@dataclasses.dataclass
class EMIConfig(ConfigDict):
    """Geometry of an :class:`EMI`.  Defaults fit the LIA family at 256 px (FixTalk's setting).

    Attributes:
        pyramid_channels: channels of each pyramid level, in the order the backbone gives them
            (LIA family, coarse to fine: 512, 512, 512, 256, 128, 64).
        identity_level: index of the identity-carrying map fed to the extractor (FixTalk's ``f_4``,
            the 32 x 32 x 512 level: index 2 of the LIA pyramid).
        pyramid_sizes: ``(H, W)`` of each level; when given, inputs are checked against them (set by
            :meth:`EMI.from_spec`).  ``None`` accepts any spatial size (the module itself is
            resolution-agnostic: levels are pooled and the position code is built per input).
        latent_dim: width of the encoder latent added as one more weighted-sum input; ``None`` leaves
            the latent out.
        dim: width ``D`` of the motion code ``z`` (the backbone's motion-input width, 512 for LIA).
        width: token width of the extractor ``P`` (must be divisible by 4 and by ``num_heads``).
        num_layers: ``N``, the number of [cross-attention + FFN] blocks in ``P``.
        num_heads: attention heads in ``P``.
        num_queries: number of learnable query vectors.
        mlp_ratio: FFN hidden width / ``width``.
        dropout: dropout in attention and FFN.
        xi: margin of the disentanglement loss (Eq. 4); the paper gives no value, 0 penalises any
            positive cosine similarity between source and driving codes.
    """

    pyramid_channels: tuple[int, ...] = (512, 512, 512, 256, 128, 64)
    identity_level: int = 2
    pyramid_sizes: tuple[tuple[int, int], ...] | None = None
    latent_dim: int | None = 512
    dim: int = 512
    width: int = 256
    num_layers: int = 2
    num_heads: int = 8
    num_queries: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    xi: float = 0.0

    def __post_init__(self) -> None:
        self.pyramid_channels = tuple(int(c) for c in self.pyramid_channels)
        if self.pyramid_sizes is not None:
            self.pyramid_sizes = tuple((int(h), int(w)) for h, w in self.pyramid_sizes)
        if not self.pyramid_channels or min(self.pyramid_channels) < 1:
            raise ValueError(f"EMIConfig: pyramid_channels must be a non-empty list of positive ints, "
                             f"got {self.pyramid_channels}")
        if not 0 <= self.identity_level < len(self.pyramid_channels):
            raise ValueError(f"EMIConfig: identity_level {self.identity_level} out of range for "
                             f"{len(self.pyramid_channels)} pyramid levels")
        if self.pyramid_sizes is not None and (len(self.pyramid_sizes) != len(self.pyramid_channels)
                                               or min(min(s) for s in self.pyramid_sizes) < 1):
            raise ValueError(f"EMIConfig: pyramid_sizes {self.pyramid_sizes} must give a positive (H, W) "
                             f"for each of the {len(self.pyramid_channels)} levels")
        for name in ("dim", "width", "num_layers", "num_heads", "num_queries"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EMIConfig: {name} must be positive, got {getattr(self, name)}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"EMIConfig: latent_dim must be positive or None, got {self.latent_dim}")
        if self.width % 4 or self.width % self.num_heads:
            raise ValueError(f"EMIConfig: width ({self.width}) must be divisible by 4 (2-D sine-cosine "
                             f"position code) and by num_heads ({self.num_heads})")
        if self.mlp_ratio <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EMIConfig: need mlp_ratio > 0 and 0 <= dropout < 1, "
                             f"got {self.mlp_ratio}, {self.dropout}")

    @property
    def num_inputs(self) -> int:
        """Inputs of the weighted sum: each level, the extractor, and the latent if used."""
        return len(self.pyramid_channels) + 1 + (self.latent_dim is not None)




def disentangle_loss(z_source: Tensor, z_driving: Tensor, xi: float = 0.0) -> Tensor:
    """FixTalk's disentanglement loss (Eq. 4): ``mean_b max(0, cos(z_s[b], z_d[b]) - xi)``.

    Args:
        z_source, z_driving: ``(B, D)`` motion codes of the source and driving frames.
        xi: margin; cosines at or below it cost nothing.

    Returns:
        Scalar tensor in ``[0, 1 - xi]`` (for ``xi >= -1``).
    """
    return (F.cosine_similarity(z_source, z_driving, dim=-1) - xi).clamp_min(0).mean()


class EMI(ConfigurableModule):
    """Enhanced Motion Indicator: feature pyramid (+ latent) -> identity-free motion code ``z``.

    Submodules: ``token_proj`` (identity-map channels -> extractor width), ``queries`` (learnable
    ``(num_queries, width)``), ``extractor`` (N :class:`~plugtalk.layers.CrossAttentionBlock`),
    ``extractor_norm``, ``level_proj`` / ``extractor_proj`` / ``latent_proj`` (each input -> ``D``),
    ``weighted_sum`` (:class:`~plugtalk.layers.SoftmaxWeightedSum`).

    Example::

        emi = EMI.from_spec(backbone.feature_spec)
        enc_d = backbone.encode(driving)
        z_d = emi(enc_d.pyramid, enc_d.latent)          # (B, 512), replaces the motion-MLP input
    """

    kind = "emi"
    config_class = EMIConfig

    def __init__(self, config: EMIConfig | None = None):
        super().__init__(config or EMIConfig())
        c = self.config
        self.token_proj = nn.Linear(c.pyramid_channels[c.identity_level], c.width)
        self.queries = nn.Parameter(trunc_normal_(torch.empty(c.num_queries, c.width), std=0.02))
        self.extractor = nn.ModuleList(
            CrossAttentionBlock(c.width, c.num_heads, mlp_ratio=c.mlp_ratio, dropout=c.dropout)
            for _ in range(c.num_layers))
        self.extractor_norm = nn.LayerNorm(c.width)
        self.level_proj = nn.ModuleList(nn.Linear(ch, c.dim) for ch in c.pyramid_channels)
        self.extractor_proj = nn.Linear(c.width, c.dim)
        self.latent_proj = nn.Linear(c.latent_dim, c.dim) if c.latent_dim is not None else None
        self.weighted_sum = SoftmaxWeightedSum(c.num_inputs)

    # -- construction from a backbone's description ---------------------------------------------------
    @classmethod
    def from_spec(cls, spec: FeatureSpec, **overrides: Any) -> "EMI":
        """Build for the backbone described by ``spec``: its levels' channels and sizes, identity level,
        latent width, and ``D = spec.motion_dim``.  ``overrides`` set any other :class:`EMIConfig` field
        (e.g. ``num_layers=4``, ``latent_dim=None``).

        Raises:
            TypeError: ``spec`` is not a FeatureSpec.  ValueError: an unknown or invalid option.
        """
        if not isinstance(spec, FeatureSpec):
            raise TypeError(f"EMI.from_spec needs a FeatureSpec, got {type(spec).__name__}")
        values: dict[str, Any] = dict(
            pyramid_channels=spec.channels, pyramid_sizes=tuple((lv.height, lv.width) for lv in spec.levels),
            identity_level=spec.identity_level, latent_dim=spec.latent_dim, dim=spec.motion_dim)
        values.update(overrides)
        return cls(config_from_dict(EMIConfig, values))

    def check_spec(self, spec: FeatureSpec) -> None:
        """Raise :class:`InputError` if this EMI cannot serve the backbone described by ``spec``
        (e.g. a checkpoint trained for another backbone or resolution)."""
        c = self.config
        problems = []
        if spec.channels != c.pyramid_channels:
            problems.append(f"pyramid channels {list(c.pyramid_channels)} vs {list(spec.channels)}")
        sizes = tuple((lv.height, lv.width) for lv in spec.levels)
        if c.pyramid_sizes is not None and sizes != c.pyramid_sizes:
            problems.append(f"pyramid sizes {list(c.pyramid_sizes)} vs {list(sizes)}")
        if spec.identity_level != c.identity_level:
            problems.append(f"identity level {c.identity_level} vs {spec.identity_level}")
        if c.latent_dim is not None and spec.latent_dim != c.latent_dim:
            problems.append(f"latent width {c.latent_dim} vs {spec.latent_dim}")
        if spec.motion_dim != c.dim:
            problems.append(f"motion-code width {c.dim} vs {spec.motion_dim}")
        if problems:
            raise InputError(f"{_OWNER}: built for another feature spec (this EMI vs the backbone's): "
                             + "; ".join(problems))

    @torch.no_grad()
    def init_passthrough(self) -> "EMI":
        """Start as the backbone's own motion input: ``z = latent`` exactly.

        For retrofitting a pretrained backbone (zero-initialisation, as ControlNet's zero convs): the
        weighted-sum logits are reset to equal, every projection but the latent's is zeroed, and the
        latent's projection is ``num_inputs * I`` so the sum returns the latent unchanged.  Gradients
        still reach every projection from the first step.

        Raises:
            ValueError: EMI built without a latent input, or ``latent_dim != dim``.
        """
        c = self.config
        if self.latent_proj is None or c.latent_dim != c.dim:
            raise ValueError("EMI.init_passthrough needs a latent input of width dim "
                             f"(latent_dim={c.latent_dim}, dim={c.dim})")
        for proj in [*self.level_proj, self.extractor_proj]:
            proj.weight.zero_()
            proj.bias.zero_()
        self.weighted_sum.logits.zero_()
        self.latent_proj.weight.copy_(torch.eye(c.dim) * c.num_inputs)
        self.latent_proj.bias.zero_()
        return self

    # -- introspection --------------------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        """Names of the weighted-sum inputs, in the order of :meth:`layer_weights`."""
        names = [f"level_{i}" for i in range(len(self.config.pyramid_channels))] + ["extractor"]
        return names + (["latent"] if self.config.latent_dim is not None else [])

    def layer_weights(self) -> Tensor:
        """Softmax-normalised weighted-sum weights ``(num_inputs,)`` (non-negative, summing to 1)."""
        return self.weighted_sum.weights()

    # -- forward --------------------------------------------------------------------------------------
    def extract(self, identity_map: Tensor) -> Tensor:
        """Extractor ``P``: identity-carrying map ``(B, C_id, h, w)`` -> query outputs ``(B, num_queries, width)``.

        Works for any ``h, w``: the 2-D sine-cosine position code is built for the input's size.
        """
        h, w = identity_map.shape[-2:]
        tokens = self.token_proj(rearrange(identity_map, "b c h w -> b (h w) c"))
        pos = build_sincos2d_pos_embed([h, w], dim=self.config.width, device=tokens.device, dtype=tokens.dtype)
        tokens = tokens + pos
        q = self.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        for block in self.extractor:
            q = block(q, tokens)
        return self.extractor_norm(q)

    def forward(self, pyramid: Sequence[Tensor], latent: Tensor | None = None) -> Tensor:
        """Motion code ``z`` (Sec. 4.1).

        Args:
            pyramid: the encoder's feature maps of one frame, ``len(pyramid_channels)`` tensors
                ``(B, C_i, H_i, W_i)`` in the backbone's order (and sizes, when the config has them).
            latent: ``(B, latent_dim)`` encoder latent; required iff ``latent_dim`` is set.

        Returns:
            ``(B, D)`` motion code, the weighted sum of the projected inputs (unbounded floats).

        Raises:
            InputError: wrong number of levels, channels, sizes, latent width, or batch sizes that
                disagree; the message names EMI and the expected shapes.
        """
        c = self.config
        n = len(c.pyramid_channels)
        expected = f"a sequence of {n} maps (B, C, H, W) with channels {list(c.pyramid_channels)}"
        if isinstance(pyramid, Tensor) or not isinstance(pyramid, Sequence):
            raise InputError(f"{_OWNER}: pyramid should be {expected}, got a {type(pyramid).__name__}")
        if len(pyramid) != n:
            raise InputError(f"{_OWNER}: pyramid should be {expected}, got {len(pyramid)} maps")
        batch = None
        for i, (x, ch) in enumerate(zip(pyramid, c.pyramid_channels)):
            size = c.pyramid_sizes[i] if c.pyramid_sizes is not None else None
            check_feature_map(x, _OWNER, f"pyramid level {i}", ch, size, batch)
            batch = x.shape[0]
        if c.latent_dim is None:
            if latent is not None:
                raise InputError(f"{_OWNER}: built without a latent input (latent_dim=None) but a latent was given")
        else:
            if latent is None:
                raise InputError(f"{_OWNER}: latent ({batch}, {c.latent_dim}) is required (latent_dim={c.latent_dim})")
            check_vectors(latent, _OWNER, "latent", c.latent_dim, batch)

        inputs = [proj(x.mean(dim=(2, 3))) for proj, x in zip(self.level_proj, pyramid)]
        inputs.append(self.extractor_proj(self.extract(pyramid[c.identity_level]).mean(dim=1)))
        if self.latent_proj is not None:
            inputs.append(self.latent_proj(latent))
        return self.weighted_sum(torch.stack(inputs, dim=1))

    def disentangle_loss(self, z_source: Tensor, z_driving: Tensor) -> Tensor:
        """Eq. 4 with this EMI's margin ``xi``: see :func:`disentangle_loss`.

        Raises:
            InputError: codes not ``(B, D)`` or of different batch sizes.
        """
        d = self.config.dim
        check_vectors(z_source, _OWNER, "z_source", d)
        check_vectors(z_driving, _OWNER, "z_driving", d, z_source.shape[0])
        return disentangle_loss(z_source, z_driving, self.config.xi)
