"""EMI - Enhanced Motion Indicator (FixTalk, Tan et al., ICCV 2025, Sec. 4.1, Fig. 4b, Eq. 4).

A one-shot animator turns the driving frame into a motion code from its encoder latent alone, and that
code still carries the driver's identity (identity leakage).  EMI builds the motion code ``z`` from the
feature pyramid instead (``inputs="paper"``, the default):

* an extractor ``P`` - N pre-LayerNorm residual blocks of [cross-attention + FFN] whose queries are
  learnable vectors (BLIP-2's Q-Former) and whose keys/values are the tokens of the identity-carrying
  map (FixTalk's ``f_4``: 512 x 32 x 32 at 256 px) with a fixed 2-D sine-cosine position code;
* every *other* pyramid level global-average-pooled and ``P``'s output mean-pooled over its queries,
  each brought to width ``D`` by a linear map - the identity level reaches ``z`` only through ``P``
  and the encoder latent not at all ("Unlike Baseline, which directly uses f_6^d ...", Fig. 4b);
* a SUPERB-style weighted sum (one learnable scalar per input, softmax-normalised) giving ``z (B, D)``,
  which replaces the backbone's plain motion input (the latent that LIA/DPE feed their motion MLP,
  EDTalk its latent-navigation heads).

**Level set.**  FixTalk names five encoder levels, ``f_1:5`` with ``f_4`` the 512 x 32 x 32 identity map,
besides the latent.  plugtalk's pyramids hold every level from 8 x 8 to the image size (six at 256 px),
and ``level_set="all"`` (the default) reads them all; ``level_set="f1:5"`` reads exactly FixTalk's five,
counted fine to coarse from ``f_4`` (three finer levels, one coarser): at 256 px 256, 128, 64, [32], 16
px - the 8 x 8 level is not read.  :attr:`EMIConfig.read_levels` lists the levels read.

Training adds the disentanglement loss ``L_dis = max(0, cos(z_s, z_d) - xi)`` (Eq. 4) between the
codes of the source and driving frames.

**Retrofitting a pretrained backbone (ours, not the paper's: FixTalk trains EMI from scratch with the
backbone).**  A frozen backbone only works with the motion input it was trained on, so a leak-free EMI
cannot start there.  A *latent bridge* does: ``z = g * latent + (1 - g) * z_free`` with a scalar gate
``g`` (``bridge_gate``, a config value, not a weight).  :meth:`EMI.init_passthrough` opens it (``g = 1``:
``z = latent`` exactly, the backbone is reproduced); training (``plugtalk.train``, ``emi_bridge``
section) first distils ``z_free`` onto the backbone's motion input (:func:`distill_loss`), then closes
the gate linearly to exactly ``0``, from which point the latent is not read at all and ``z = z_free``.
A trained model's file carries ``g = 0``.

**Ablation (a deviation from the paper): ``inputs="leaky"``** feeds the weighted sum every level
pooled *including the raw identity level*, plus the latent (``z = latent`` at pass-through start) -
plugtalk's wiring before issue 11, kept so that files written then (their configs have no ``inputs``
field and load as ``"leaky"``) and ablations keep working.

Choices the paper leaves open, and ours: N = 2 layers, 8 queries of width 256, 8 heads, FFN ratio 4,
no dropout; keys/values are projected to the extractor width and the position code is added to them
(so it reaches both keys and values); ``xi = 0`` (any positive cosine is penalised); the identity map
is average-pooled to at most ``extractor_grid`` tokens a side before ``P`` (cost; see
:class:`EMIConfig`).  All are config options.  EMI imports no backbone: it is built from channel counts
(an :class:`EMIConfig`) or from a backbone's :class:`~plugtalk.features.FeatureSpec` (:meth:`EMI.from_spec`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from torch import Tensor, nn

from .checks import check_dtype, check_feature_map, check_vectors
from .weights.configurable import ConfigDict, ConfigurableModule, config_from_dict
from .errors import InputError
from .features import FeatureSpec
from .layers import CrossAttentionBlock, SoftmaxWeightedSum

__all__ = ["EMIConfig", "EMI", "EMICodes", "INPUTS", "LEVEL_SETS", "disentangle_loss", "distill_loss"]

_OWNER = "EMI"
#: Weighted-sum wirings: FixTalk's (``"paper"``) and the pre-issue-11 ablation (``"leaky"``).
INPUTS = ("paper", "leaky")
#: Which pyramid levels EMI reads: every level (``"all"``) or FixTalk's five, ``f_1:5`` (``"f1:5"``).
LEVEL_SETS = ("all", "f1:5")
#: ``"f1:5"``: levels finer (f_1 .. f_3) and coarser (f_5) than the identity level f_4.
F15_FINER, F15_COARSER = 3, 1


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
        inputs: ``"paper"`` (FixTalk Fig. 4b: the weighted sum runs over the pooled levels *other than*
            the identity level and ``P``'s output) or ``"leaky"`` (ablation, a deviation from the paper:
            every level pooled including the raw identity level, plus the latent).
        latent_dim: width of the encoder latent.  ``"paper"``: the latent of the bridge (must equal
            ``dim``; ``None``: no bridge, so no pass-through start).  ``"leaky"``: the latent added as one
            more weighted-sum input (``None`` leaves it out).
        bridge_gate: ``"paper"`` only: the gate ``g`` in ``z = g * latent + (1 - g) * z_free``, in [0, 1];
            1 after :meth:`EMI.init_passthrough`, driven to exactly 0 by training.  At 0 the latent is not read.
        dim: width ``D`` of the motion code ``z`` (the backbone's motion-input width, 512 for LIA).
        width: token width of the extractor ``P`` (must be divisible by 4 and by ``num_heads``).
        num_layers: ``N``, the number of [cross-attention + FFN] blocks in ``P``.
        num_heads: attention heads in ``P``.
        num_queries: number of learnable query vectors.
        mlp_ratio: FFN hidden width / ``width``.
        dropout: dropout in attention and FFN.
        xi: margin of the disentanglement loss (Eq. 4); the paper gives no value, 0 penalises any
            positive cosine similarity between source and driving codes.
        extractor_grid: the identity map is average-pooled to at most this many tokens a side before
            ``P`` (``None``: every position is a token, 1024 at 32 x 32).  Ours, for cost: the token
            projection over 32 x 32 x 512 was most of EMI's time; 16 keeps a 16 x 16 layout (256 tokens).
        level_set: which pyramid levels EMI reads (``"paper"`` wiring only).  ``"all"`` (default): every
            level - the identity level through ``P``, every other one pooled into the weighted sum (at
            256 px also the 8 x 8 level, which FixTalk's ``f_1:5`` does not name).  ``"f1:5"``: exactly
            FixTalk's five levels ``f_1:5`` (Sec. 3.1, 4.1; suppl. 2.7), counted fine to coarse with
            ``f_4`` the identity level: the three finer levels ``f_1 .. f_3`` and the next coarser ``f_5``
            are pooled, ``f_4`` goes through ``P``, every other level is not read (at 256 px: reads
            256, 128, 64, [32], 16 and not 8).  Needs three finer and one coarser level around the
            identity level (ValueError otherwise).
    """

    pyramid_channels: tuple[int, ...] = (512, 512, 512, 256, 128, 64)
    identity_level: int = 2
    pyramid_sizes: tuple[tuple[int, int], ...] | None = None
    inputs: str = "paper"
    latent_dim: int | None = 512
    bridge_gate: float = 0.0
    dim: int = 512
    width: int = 256
    num_layers: int = 2
    num_heads: int = 8
    num_queries: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    xi: float = 0.0
    extractor_grid: int | None = 16
    level_set: str = "all"

    def __post_init__(self) -> None:
        self.pyramid_channels = tuple(int(c) for c in self.pyramid_channels)
        if self.pyramid_sizes is not None:
            self.pyramid_sizes = tuple((int(h), int(w)) for h, w in self.pyramid_sizes)
        self.bridge_gate = float(self.bridge_gate)
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
        if self.inputs not in INPUTS:
            raise ValueError(f"EMIConfig: inputs must be one of {INPUTS}, got {self.inputs!r}")
        for name in ("dim", "width", "num_layers", "num_heads", "num_queries"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EMIConfig: {name} must be positive, got {getattr(self, name)}")
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"EMIConfig: latent_dim must be positive or None, got {self.latent_dim}")
        if self.inputs == "paper" and self.latent_dim not in (None, self.dim):
            raise ValueError(f"EMIConfig: with inputs='paper' the latent only feeds the pass-through bridge, so "
                             f"latent_dim must equal dim ({self.dim}) or be None, got {self.latent_dim}")
        if not 0.0 <= self.bridge_gate <= 1.0:
            raise ValueError(f"EMIConfig: bridge_gate must lie in [0, 1], got {self.bridge_gate}")
        if self.bridge_gate and not self.has_bridge:
            raise ValueError("EMIConfig: bridge_gate needs inputs='paper' and a latent (latent_dim = dim)")
        if self.level_set not in LEVEL_SETS:
            raise ValueError(f"EMIConfig: level_set must be one of {LEVEL_SETS}, got {self.level_set!r}")
        if self.level_set == "f1:5":
            k, n = self.identity_level, len(self.pyramid_channels)
            if self.inputs != "paper":
                raise ValueError("EMIConfig: level_set 'f1:5' is FixTalk's wiring and needs inputs='paper'")
            if k < F15_COARSER or k + F15_FINER >= n:
                raise ValueError(f"EMIConfig: level_set 'f1:5' reads the identity level (f_4, index {k}), the "
                                 f"{F15_FINER} finer levels (f_1..f_3) and the next coarser one (f_5); this pyramid "
                                 f"has {n - 1 - k} finer and {k} coarser level(s) (levels coarse to fine)")
        if self.extractor_grid is not None and self.extractor_grid < 1:
            raise ValueError(f"EMIConfig: extractor_grid must be positive or None, got {self.extractor_grid}")
        if self.width % 4 or self.width % self.num_heads:
            raise ValueError(f"EMIConfig: width ({self.width}) must be divisible by 4 (2-D sine-cosine "
                             f"position code) and by num_heads ({self.num_heads})")
        if self.mlp_ratio <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EMIConfig: need mlp_ratio > 0 and 0 <= dropout < 1, "
                             f"got {self.mlp_ratio}, {self.dropout}")

    @property
    def has_bridge(self) -> bool:
        """``"paper"`` wiring with a latent: the gated pass-through path exists."""
        return self.inputs == "paper" and self.latent_dim is not None

    @property
    def read_levels(self) -> tuple[int, ...]:
        """Pyramid levels (indices, coarse to fine) EMI reads at all: every level, or for ``"f1:5"``
        ``f_5, f_4, f_3, f_2, f_1`` (the identity level, one coarser and three finer)."""
        n, k = len(self.pyramid_channels), self.identity_level
        if self.level_set == "f1:5":
            return tuple(range(k - F15_COARSER, k + F15_FINER + 1))
        return tuple(range(n))

    @property
    def summed_levels(self) -> tuple[int, ...]:
        """Pyramid levels pooled into the weighted sum (``"paper"``: the read levels but the identity level)."""
        return tuple(i for i in self.read_levels if self.inputs == "leaky" or i != self.identity_level)

    @property
    def num_inputs(self) -> int:
        """Inputs of the weighted sum: the summed levels, the extractor, and (``"leaky"``) the latent."""
        return len(self.summed_levels) + 1 + (self.inputs == "leaky" and self.latent_dim is not None)


class EMICodes(NamedTuple):
    """EMI's output in full: ``code`` (what the backbone gets) and ``free`` (the leak-free weighted sum),
    both ``(B, D)``; equal once the bridge is closed (and always for ``"leaky"``)."""

    code: Tensor
    free: Tensor


def disentangle_loss(z_source: Tensor, z_driving: Tensor, xi: float = 0.0) -> Tensor:
    """FixTalk's disentanglement loss (Eq. 4): ``mean_b max(0, cos(z_s[b], z_d[b]) - xi)``.

    Args:
        z_source, z_driving: ``(B, D)`` motion codes of the source and driving frames.
        xi: margin; cosines at or below it cost nothing.

    Returns:
        Scalar tensor in ``[0, 1 - xi]`` (for ``xi >= -1``).
    """
    return (F.cosine_similarity(z_source, z_driving, dim=-1) - xi).clamp_min(0).mean()


def distill_loss(z_free: Tensor, target: Tensor) -> Tensor:
    """Bridge warm-up loss (ours): relative squared error ``sum (z_free - t)^2 / sum t^2`` of EMI's leak-free
    code against the backbone's own motion input ``t`` (detached: a target, not a path).

    Args:
        z_free, target: ``(N, D)``.

    Returns:
        Scalar ``>= 0``; 1 means "no better than predicting zeros".
    """
    t = target.detach()
    return (z_free - t).square().sum() / t.square().sum().clamp_min(1e-12)


class EMI(ConfigurableModule):
    """Enhanced Motion Indicator: feature pyramid -> identity-free motion code ``z``.

    Submodules: ``token_proj`` (identity-map channels -> extractor width), ``queries`` (learnable
    ``(num_queries, width)``), ``extractor`` (N :class:`~plugtalk.layers.CrossAttentionBlock`),
    ``extractor_norm``, ``level_proj`` (a dict by level index: each summed level -> ``D``),
    ``extractor_proj`` (-> ``D``), ``latent_proj`` (``"leaky"`` only), ``weighted_sum``
    (:class:`~plugtalk.layers.SoftmaxWeightedSum`).

    Example::

        emi = EMI.from_spec(backbone.feature_spec)
        enc_d = backbone.encode(driving)
        z_d = emi(enc_d.pyramid)                        # (B, 512), replaces the motion-MLP input
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
        # keyed by level index: the state-dict names (level_proj.<i>.weight) are those of every version
        self.level_proj = nn.ModuleDict({str(i): nn.Linear(c.pyramid_channels[i], c.dim) for i in c.summed_levels})
        self.extractor_proj = nn.Linear(c.width, c.dim)
        leaky_latent = c.inputs == "leaky" and c.latent_dim is not None
        self.latent_proj = nn.Linear(c.latent_dim, c.dim) if leaky_latent else None
        self.weighted_sum = SoftmaxWeightedSum(c.num_inputs)

    @classmethod
    def config_from(cls, values: dict[str, Any]) -> EMIConfig:
        """Config from a file's metadata.  Files written before the ``inputs`` option existed used the
        ``"leaky"`` wiring, so a config without ``inputs`` loads as ``"leaky"``."""
        values = dict(values)
        values.setdefault("inputs", "leaky")
        if values["inputs"] == "leaky":
            values.setdefault("extractor_grid", None)  # files of that time attended over every position
        return config_from_dict(EMIConfig, values)

    # -- construction from a backbone's description ---------------------------------------------------
    @classmethod
    def from_spec(cls, spec: FeatureSpec, **overrides: Any) -> "EMI":
        """Build for the backbone described by ``spec``: its levels' channels and sizes, identity level,
        latent width, and ``D = spec.motion_dim``.  ``overrides`` set any other :class:`EMIConfig` field
        (e.g. ``num_layers=4``, ``inputs="leaky"``, ``latent_dim=None``).

        Raises:
            TypeError: ``spec`` is not a FeatureSpec.  ValueError: an unknown or invalid option.
        """
        if not isinstance(spec, FeatureSpec):
            raise TypeError(f"EMI.from_spec needs a FeatureSpec, got {type(spec).__name__}")
        values: dict[str, Any] = dict(
            pyramid_channels=spec.channels, pyramid_sizes=tuple((lv.height, lv.width) for lv in spec.levels),
            identity_level=spec.identity_level, latent_dim=spec.latent_dim, dim=spec.motion_dim)
        if overrides.get("inputs", "paper") == "paper" and spec.latent_dim != spec.motion_dim:
            values["latent_dim"] = None  # no bridge: the latent is not the motion input's width
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

    # -- the latent bridge ----------------------------------------------------------------------------
    @property
    def bridge_gate(self) -> float:
        """The bridge gate ``g`` (0 when there is no bridge)."""
        return self.config.bridge_gate if self.config.has_bridge else 0.0

    def set_bridge_gate(self, gate: float) -> None:
        """Set ``g`` in ``z = g * latent + (1 - g) * z_free`` (a training schedule drives it to 0).

        Raises:
            ValueError: ``gate`` outside [0, 1], or a non-zero gate on an EMI without a bridge.
        """
        gate = float(gate)
        if not 0.0 <= gate <= 1.0:
            raise ValueError(f"EMI.set_bridge_gate: gate must lie in [0, 1], got {gate}")
        if gate and not self.config.has_bridge:
            raise ValueError("EMI.set_bridge_gate: this EMI has no latent bridge (inputs='leaky' or latent_dim=None)")
        if self.config.has_bridge:
            self.config.bridge_gate = gate

    @torch.no_grad()
    def init_passthrough(self) -> "EMI":
        """Start as the backbone's own motion input: ``z = latent`` exactly.

        ``"paper"``: opens the bridge (``bridge_gate = 1``); the leak-free path keeps its random
        initialisation and is trained by distillation while the gate closes (see the module docstring).
        ``"leaky"``: zero-initialisation, as ControlNet's zero convs: the weighted-sum logits are reset to
        equal, every projection but the latent's is zeroed, and the latent's projection is
        ``num_inputs * I`` so the sum returns the latent unchanged.

        Raises:
            ValueError: EMI built without a latent input, or ``latent_dim != dim``.
        """
        c = self.config
        if c.latent_dim != c.dim:
            raise ValueError("EMI.init_passthrough needs a latent input of width dim "
                             f"(latent_dim={c.latent_dim}, dim={c.dim})")
        if c.inputs == "paper":
            self.set_bridge_gate(1.0)
            return self
        for proj in [*self.level_proj.values(), self.extractor_proj]:
            proj.weight.zero_()
            proj.bias.zero_()
        self.weighted_sum.logits.zero_()
        self.latent_proj.weight.copy_(torch.eye(c.dim) * c.num_inputs)
        self.latent_proj.bias.zero_()
        return self

    # -- introspection --------------------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        """Names of the weighted-sum inputs, in the order of :meth:`layer_weights`."""
        c = self.config
        names = [f"level_{i}" for i in c.summed_levels] + ["extractor"]
        return names + (["latent"] if self.latent_proj is not None else [])

    def layer_weights(self) -> Tensor:
        """Softmax-normalised weighted-sum weights ``(num_inputs,)`` (non-negative, summing to 1)."""
        return self.weighted_sum.weights()

    def extra_repr(self) -> str:
        c = self.config
        return (f"inputs={c.inputs!r}, level_set={c.level_set!r}, bridge_gate={self.bridge_gate:g}, "
                f"extractor_grid={c.extractor_grid}")

    # -- forward --------------------------------------------------------------------------------------
    def extract(self, identity_map: Tensor) -> Tensor:
        """Extractor ``P``: identity-carrying map ``(B, C_id, h, w)`` -> query outputs ``(B, num_queries, width)``.

        Works for any ``h, w``: the map is average-pooled to at most ``extractor_grid`` a side and the
        2-D sine-cosine position code is built for the pooled size.
        """
        g = self.config.extractor_grid
        h, w = identity_map.shape[-2:]
        if g is not None and (h > g or w > g):
            identity_map = F.adaptive_avg_pool2d(identity_map, (min(h, g), min(w, g)))
            h, w = identity_map.shape[-2:]
        tokens = self.token_proj(rearrange(identity_map, "b c h w -> b (h w) c"))
        pos = build_sincos2d_pos_embed([h, w], dim=self.config.width, device=tokens.device, dtype=tokens.dtype)
        tokens = tokens + pos
        q = self.queries.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        for block in self.extractor:
            q = block(q, tokens)
        return self.extractor_norm(q)

    def _check(self, pyramid: Sequence[Tensor], latent: Tensor | None) -> None:
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
            check_dtype(x, self, _OWNER, f"pyramid level {i}")
            batch = x.shape[0]
        if c.latent_dim is None:
            if latent is not None:
                raise InputError(f"{_OWNER}: built without a latent input (latent_dim=None) but a latent was given")
        elif latent is not None:
            check_vectors(latent, _OWNER, "latent", c.latent_dim, batch)
        elif self.latent_proj is not None or self.bridge_gate > 0:
            why = "a weighted-sum input" if self.latent_proj is not None else f"bridge_gate={self.bridge_gate:g}"
            raise InputError(f"{_OWNER}: latent ({batch}, {c.latent_dim}) is required ({why})")

    def codes(self, pyramid: Sequence[Tensor], latent: Tensor | None = None) -> EMICodes:
        """Both codes: what the backbone gets (``code``) and the leak-free weighted sum (``free``); see
        :meth:`forward` for arguments and errors.  Training uses ``free`` for L_dis and the distillation."""
        self._check(pyramid, latent)
        c = self.config
        inputs = [self.level_proj[str(i)](pyramid[i].mean(dim=(2, 3))) for i in c.summed_levels]
        inputs.append(self.extractor_proj(self.extract(pyramid[c.identity_level]).mean(dim=1)))
        if self.latent_proj is not None:
            inputs.append(self.latent_proj(latent))
        free = self.weighted_sum(torch.stack(inputs, dim=1))
        g = self.bridge_gate
        if g == 0.0:
            return EMICodes(free, free)  # closed: the latent is not read
        if g == 1.0:
            return EMICodes(latent.to(free.dtype), free)  # open: exactly the backbone's own motion input
        return EMICodes(g * latent.to(free.dtype) + (1.0 - g) * free, free)

    def forward(self, pyramid: Sequence[Tensor], latent: Tensor | None = None) -> Tensor:
        """Motion code ``z`` (Sec. 4.1).

        Args:
            pyramid: the encoder's feature maps of one frame, ``len(pyramid_channels)`` tensors
                ``(B, C_i, H_i, W_i)`` in the backbone's order (and sizes, when the config has them).
            latent: ``(B, latent_dim)`` encoder latent: required by ``"leaky"`` (with ``latent_dim``) and
                while the bridge is open (``bridge_gate > 0``); otherwise checked if given, and unused.

        Returns:
            ``(B, D)`` motion code (unbounded floats): the weighted sum of the projected inputs, blended
            with the latent while the bridge is open.

        Raises:
            InputError: wrong number of levels, channels, sizes, latent width, a missing required latent,
                or batch sizes that disagree; the message names EMI and the expected shapes.
        """
        return self.codes(pyramid, latent).code

    def disentangle_loss(self, z_source: Tensor, z_driving: Tensor) -> Tensor:
        """Eq. 4 with this EMI's margin ``xi``: see :func:`disentangle_loss`.

        Raises:
            InputError: codes not ``(B, D)`` or of different batch sizes.
        """
        d = self.config.dim
        check_vectors(z_source, _OWNER, "z_source", d)
        check_vectors(z_driving, _OWNER, "z_driving", d, z_source.shape[0])
        return disentangle_loss(z_source, z_driving, self.config.xi)
