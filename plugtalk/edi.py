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
  slots (Eq. 5, 7), times an inverse temperature.  A recall is ``address @ memory`` (Eq. 6, 9);
* training (:meth:`EDI.forward_train`): ``Ω_d = addr(f_pi^d, M_d)``, ``f^_d = Ω_d M_d``,
  ``L_dmem = mean_b ||f_pi^d - f^_d||_2`` (Eq. 6); ``Ω_ms = addr(f_pi^s ⊕ (z_d - z_s), M_ms)`` (Eq. 7),
  ``L_align = KL(Ω_ms || Ω_d)`` (Eq. 8), batch mean;
* inference (:meth:`EDI.forward_inference`): ``f^_s = Ω_ms M_d`` (Eq. 9) - no driving map needed;
* decompressor ``Λ`` (suppl. 1.1: "a StyleGAN2 generator ... features injected via style
  modulation"): a learned constant, style-modulated convolutions up-sampling and a modulated 1x1
  projection to ``C`` channels, all styled by the recalled token through a small mapping;
* fusion (Fig. 4e): multi-head cross-attention, queries = source-map positions, keys/values = the
  restored map's tokens, added residually to the source map.  The fused map replaces the
  identity-level skip feature the decoder receives.

Choices that are ours, not the paper's (the paper's setting stays available; see ``EDIConfig``):

* **addressing** (``addressing="learned"``): the paper's plain softmax of cosines (``"fixed"`` with
  ``temperature=1``) can never select a slot - logits lie in ``[-1, 1]``, so weights differ by at most
  ``e^2`` and with 256 slots the largest weight is ~1/256 (measured 0.0045 vs uniform 0.0039).  We
  multiply the cosines by a learned inverse temperature per memory (CLIP's ``logit_scale``: a log-scale
  parameter, clamped to ``tau >= min_temperature``), started at ``tau = temperature``;
* **which recall is decoded while training** (``train_recall="scheduled"``): a linear ramp from Eq. 6's
  ``f^_d`` (driving address: the decoder first learns from the true driving detail) to Eq. 9's ``f^_s``
  (the inference path) over ``schedule_ramp`` (fractions of the run; the trainer sets the progress with
  :meth:`EDI.set_progress`), so training ends on exactly what inference uses;
* **L_align's target** (``align_stop_gradient=True``): the driving address ``Ω_d`` is a fixed target
  for ``Ω_ms`` (the usual reading of a KL alignment); without it the KL also bends ``M_d``'s addressing
  toward the motion-source side;
* **L_dmem's scale** (``dmem_scale="rms"``): ``||f - f^|| / sqrt(C)`` (per-channel RMS), so the loss
  does not grow with ``C`` and with the token's scale dwarfing ``L_align`` (nats, at most ``log S``);
* **memory start** (``memory_init="data"``): slots start at the first training batch's tokens (plus
  10 % jitter), as VQ codebooks are often started; ``N(0, 1)`` slots sat about 3x above the real
  tokens' scale (64 px faces: token RMS 0.33) and, at the paper's lr 2e-4, move by ~2e-4 a step;
* **cost** (``fusion_grid``, ``fusion_dim``): the decompressor restores a ``g x g`` map (not the full
  ``h x w``) and the fusion attends from every source position to those ``g*g`` tokens at width
  ``fusion_dim`` (:class:`Fusion`) - FixTalk calls EDI lightweight; at 512 x 32 x 32 the full-size
  restore and the full-width 1024 x 1024 attention took 214 ms on one CPU thread, the defaults 35 ms
  (``benchmarks/edi_cost.py``).  The fusion's output projection still starts at zero (pass-through).

Files written before these options existed load with the old behaviour (:meth:`EDI.config_from`:
fixed temperature, ``train_recall`` as saved, no stop-gradient, unscaled ``L_dmem``, random memory
start, full-size restore and fusion).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .checks import check_dtype, check_feature_map, check_vectors
from .weights.configurable import ConfigDict, ConfigurableModule, config_from_dict
from .errors import InputError
from .features import FeatureSpec
from .layers import CrossAttentionBlock, EqualLinear, ModulatedConv2d, SoftmaxWeightedSum, StyledConv

__all__ = ["EDIConfig", "EDI", "EDIOutput", "Compressor", "Decompressor", "Fusion", "AddressScale",
           "memory_logits", "memory_recall", "alignment_loss", "address_entropy", "slot_usage", "recall_gap",
           "LEGACY_OPTIONS"]

_OWNER = "EDI"
TRAIN_RECALL = ("driving", "motion_source", "scheduled")
ADDRESSING = ("fixed", "learned", "annealed")
DMEM_SCALE = ("paper", "rms")
MEMORY_INIT = ("random", "data")
#: Values of the options added after the first release, for config dicts (saved files) that lack them.
LEGACY_OPTIONS: dict[str, Any] = {"addressing": "fixed", "align_stop_gradient": False, "dmem_scale": "paper",
                                  "memory_init": "random",
                                  "fusion_grid": 0, "fusion_dim": 0, "train_recall": "driving"}


@dataclasses.dataclass
class EDIConfig(ConfigDict):
    """Geometry and training options of an :class:`EDI`.  Geometry defaults are FixTalk's (``f_4`` is
    512 x 32 x 32, motion code 512); option defaults are ours (see the module docstring); the paper's
    setting is ``addressing="fixed", temperature=1, train_recall="driving", align_stop_gradient=False,
    dmem_scale="paper", memory_init="random", fusion_grid=0, fusion_dim=0``.

    Attributes:
        channels, height, width: shape ``(C, h, w)`` of the identity-carrying map.
        motion_dim: width ``D`` of the motion codes ``z_s, z_d`` (EMI's output).
        num_slots: ``S``, slots in each memory (not given in the paper).
        addressing: ``"fixed"``: logits = cosine / ``temperature`` (Eq. 5, 7 with ``temperature=1``);
            ``"learned"``: logits = cosine * ``exp(log_scale)``, one learned log-scale per memory,
            started at ``1 / temperature`` and clamped to ``[0, log(1 / min_temperature)]``.
        temperature: ``tau`` (fixed), or the starting ``tau`` (learned).
        min_temperature: smallest ``tau`` a learned temperature may reach.
        pool_grid: ``g``, the compressor's pooling grid (``g <= min(h, w)``).
        decoder_base: smallest side of the decompressor's learned constant; it up-samples by 2 while
            both sides stay divisible and at least this large (32 x 32 from 4: 4 -> 8 -> 16 -> 32).
        decoder_channels: width of the decompressor's convolutions.
        mapping_layers: EqualLinear layers (leaky ReLU) mapping the token to the style (0 = none).
        fusion_heads: heads of the fusion cross-attention (must divide ``channels`` and ``fusion_dim``).
        fusion_grid: side of the restored map the fusion attends to, capped at ``h`` and ``w`` (``0``:
            the full ``h x w``, the paper's "restore back to original shape").
        fusion_dim: width of the fusion's queries/keys/values (``0``: the full-width
            :class:`~plugtalk.layers.CrossAttentionBlock` at ``channels``).
        train_recall: token decoded by :meth:`EDI.forward_train`: ``"driving"`` (Eq. 6's recall with
            the driving address), ``"motion_source"`` (Eq. 9's recall, the inference path) or
            ``"scheduled"`` (a linear ramp from the first to the second over ``schedule_ramp``).
        schedule_ramp: ``(start, end)`` fractions of training over which ``"scheduled"`` moves from the
            driving recall to the motion-source recall.
        align_stop_gradient: ``L_align`` treats ``Ω_d`` as a constant target.
        dmem_scale: ``"paper"``: ``L_dmem = ||f - f^||`` (Eq. 6); ``"rms"``: divided by ``sqrt(C)``.
        memory_init: ``"random"``: slots ``~ N(0, 1)``; ``"data"``: at the first training batch, slot
            ``i`` becomes that batch's token ``i mod B`` (``f_pi^d`` for ``M_d``, its query for ``M_ms``)
            plus its random start scaled to 10 % of the tokens' RMS (VQ codebooks' data init).
    """

    channels: int = 512
    height: int = 32
    width: int = 32
    motion_dim: int = 512
    num_slots: int = 256
    addressing: str = "learned"
    temperature: float = 0.1
    min_temperature: float = 0.01
    pool_grid: int = 4
    decoder_base: int = 4
    decoder_channels: int = 256
    mapping_layers: int = 2
    fusion_heads: int = 8
    fusion_grid: int = 8
    fusion_dim: int = 128
    train_recall: str = "scheduled"
    schedule_ramp: tuple[float, float] = (0.0, 0.5)
    align_stop_gradient: bool = True
    dmem_scale: str = "rms"
    memory_init: str = "data"

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "motion_dim", "num_slots", "pool_grid", "decoder_base",
                     "decoder_channels", "fusion_heads"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EDIConfig: {name} must be positive, got {getattr(self, name)}")
        if self.mapping_layers < 0:
            raise ValueError(f"EDIConfig: mapping_layers must be >= 0, got {self.mapping_layers}")
        if self.addressing not in ADDRESSING:
            raise ValueError(f"EDIConfig: addressing must be one of {ADDRESSING}, got {self.addressing!r}")
        if not self.temperature > 0:
            raise ValueError(f"EDIConfig: temperature must be > 0, got {self.temperature}")
        if not 0 < self.min_temperature <= self.temperature:
            raise ValueError(f"EDIConfig: min_temperature must lie in (0, temperature], got {self.min_temperature}")
        if self.pool_grid > min(self.height, self.width):
            raise ValueError(f"EDIConfig: pool_grid {self.pool_grid} exceeds the map size {self.height}x{self.width}")
        if self.fusion_grid < 0:
            raise ValueError(f"EDIConfig: fusion_grid must be >= 0 (0: the full map), got {self.fusion_grid}")
        if self.fusion_dim < 0:
            raise ValueError(f"EDIConfig: fusion_dim must be >= 0 (0: channels), got {self.fusion_dim}")
        width = self.fusion_dim or self.channels
        if width % self.fusion_heads:
            raise ValueError(f"EDIConfig: fusion_heads ({self.fusion_heads}) must divide the fusion width ({width}: "
                             "fusion_dim, or channels when fusion_dim is 0)")
        if self.train_recall not in TRAIN_RECALL:
            raise ValueError(f"EDIConfig: train_recall must be one of {TRAIN_RECALL}, got {self.train_recall!r}")
        ramp = tuple(float(v) for v in self.schedule_ramp)
        if len(ramp) != 2 or not 0 <= ramp[0] <= ramp[1] <= 1:
            raise ValueError(f"EDIConfig: schedule_ramp must be (start, end) with 0 <= start <= end <= 1, "
                             f"got {self.schedule_ramp}")
        self.schedule_ramp = ramp
        if self.memory_init not in MEMORY_INIT:
            raise ValueError(f"EDIConfig: memory_init must be one of {MEMORY_INIT}, got {self.memory_init!r}")
        if self.dmem_scale not in DMEM_SCALE:
            raise ValueError(f"EDIConfig: dmem_scale must be one of {DMEM_SCALE}, got {self.dmem_scale!r}")


# -- leakage memory (Eq. 5-9) -----------------------------------------------------------------------------
def memory_logits(query: Tensor, memory: Tensor, temperature: float | Tensor = 1.0) -> Tensor:
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


# -- diagnostics (logged while training; not in the paper) ------------------------------------------------
def address_entropy(address: Tensor) -> Tensor:
    """Mean over the batch of each address's entropy divided by ``log S``: 1 = uniform, 0 = one slot.

    Shapes: ``(B, S)`` softmax addresses -> scalar in ``[0, 1]`` (0 when ``S = 1``).
    """
    s = address.shape[-1]
    if s < 2:
        return address.new_zeros(())
    p = address.float()
    return -(p * p.clamp_min(1e-30).log()).sum(-1).mean() / math.log(s)


def slot_usage(address: Tensor, threshold: float = 0.01) -> Tensor:
    """Number of slots receiving more than ``threshold`` of the batch's total address mass.

    Uniform addressing over ``S`` slots gives ``S`` when ``1/S > threshold`` and 0 otherwise; ``k``
    sharply addressed slots give ``k``.  Shapes: ``(B, S)`` -> scalar (float, for logging).
    """
    return (address.float().mean(0) > threshold).sum().float()


def recall_gap(recalled: Tensor, target: Tensor) -> Tensor:
    """``mean_b ||recalled - target|| / ||target||``: relative error of a recalled token.

    Shapes: two ``(B, C)`` tensors -> scalar ``>= 0``.
    """
    r, t = recalled.float(), target.float()
    return (torch.linalg.vector_norm(r - t, dim=-1) / torch.linalg.vector_norm(t, dim=-1).clamp_min(1e-12)).mean()


class AddressScale(nn.Module):
    """Inverse temperature of one memory's addresses (multiplies the cosines of Eq. 5 / 7).

    ``mode="fixed"``: the constant ``1 / temperature``.  ``"learned"``: ``exp(log_scale)``, a parameter
    started at ``log(1 / temperature)`` and clamped to ``[0, log(1 / min_temperature)]`` (CLIP's
    learnable ``logit_scale``, Radford et al. 2021).  ``"annealed"``: ``tau`` moves geometrically from
    ``temperature`` to ``min_temperature`` as :attr:`ramp` goes from 0 to 1 (set by
    :meth:`EDI.set_progress`; after training it stays at 1, i.e. ``min_temperature``, unless set).
    ``forward()`` -> scalar tensor (learned) or float.
    """

    def __init__(self, temperature: float, mode: str, min_temperature: float):
        super().__init__()
        self.mode = mode
        self.temperature = float(temperature)
        self.min_temperature = float(min_temperature)
        self.max_log_scale = math.log(1.0 / min_temperature)
        self.ramp = 1.0
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature))) if mode == "learned" else None

    def forward(self) -> Tensor | float:
        if self.log_scale is not None:
            return self.log_scale.clamp(0.0, self.max_log_scale).exp()
        if self.mode == "annealed":
            return 1.0 / (self.temperature ** (1.0 - self.ramp) * self.min_temperature ** self.ramp)
        return 1.0 / self.temperature

    def logits(self, query: Tensor, memory: Tensor) -> Tensor:
        """Address logits ``(B, S)`` of ``query (B, K)`` against ``memory (S, K)``."""
        if self.log_scale is None:
            return memory_logits(query, memory, 1.0 / self())
        return memory_logits(query, memory) * self().to(query.dtype)

    def current_temperature(self) -> float:
        return 1.0 / float(self())


# -- compressor, decompressor, fusion ----------------------------------------------------------------------
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


class Fusion(nn.Module):
    """Narrow multi-head cross-attention fusing a restored map into the source map (Fig. 4e, our width).

    ``x + W_o MHA(W_q LN(x), W_k LN(r), W_v LN(r))`` with ``W_q, W_k, W_v: C -> dim`` and
    ``W_o: dim -> C``; ``W_o`` starts at zero (pass-through) via :meth:`zero_output`.

    Shapes: ``x (B, N, C)`` source positions, ``context (B, M, C)`` restored tokens -> ``(B, N, C)``.
    """

    def __init__(self, channels: int, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm_query = nn.LayerNorm(channels)
        self.norm_context = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, dim)
        self.to_kv = nn.Linear(channels, 2 * dim)
        self.out = nn.Linear(dim, channels)

    @torch.no_grad()
    def zero_output(self) -> None:
        self.out.weight.zero_()
        self.out.bias.zero_()

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        q = rearrange(self.to_q(self.norm_query(x)), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = rearrange(self.to_kv(self.norm_context(context)), "b m (two h d) -> two b h m d", two=2,
                         h=self.num_heads)
        attended = rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)")
        return x + self.out(attended)


class EDIOutput(NamedTuple):
    """What :class:`EDI` returns."""

    fused: Tensor                  #: ``(B, C, h, w)`` map replacing the identity-level skip feature
    losses: dict[str, Tensor]      #: ``{"dmem", "align"}`` (scalars) in training, ``{}`` at inference
    addresses: dict[str, Tensor]   #: ``(B, S)`` softmax addresses: ``"motion_source"`` (+ ``"driving"`` in training)
    token: Tensor                  #: ``(B, C)`` recalled token that was decoded
    restored: Tensor               #: ``(B, C, g, g)`` decompressor output before fusion (``(B, C, h, w)`` if ``fusion_grid=0``)


class EDI(ConfigurableModule):
    """Enhanced Detail Indicator: source map + motion codes -> detail-enhanced map (Sec. 4.2).

    Submodules / parameters: ``compressor`` (:class:`Compressor`), ``memory_d`` ``(S, C)``,
    ``memory_ms`` ``(S, C + D)``, ``scale_d`` / ``scale_ms`` (:class:`AddressScale`), ``decompressor``
    (:class:`Decompressor`), ``fusion`` (:class:`Fusion`, or a
    :class:`~plugtalk.layers.CrossAttentionBlock` without FFN when ``fusion_dim=0``).

    Attributes:
        diagnostics: after each :meth:`forward_train`, detached scalars for logging: ``entropy_d``,
            ``entropy_ms`` (:func:`address_entropy`), ``slot_usage_d``, ``slot_usage_ms``
            (:func:`slot_usage`), ``recall_gap_ms`` (Eq. 9's recall vs ``f_pi^d``, :func:`recall_gap`),
            ``recall_gap_d`` (Eq. 6's recall vs ``f_pi^d``), ``temperature_d``, ``temperature_ms``,
            ``recall_mix``.
        progress: fraction of training done, set by the trainer (:meth:`set_progress`); drives
            ``train_recall="scheduled"``.

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
        self.scale_d = AddressScale(c.temperature, c.addressing, c.min_temperature)
        self.scale_ms = AddressScale(c.temperature, c.addressing, c.min_temperature)
        size = (min(c.fusion_grid, c.height), min(c.fusion_grid, c.width)) if c.fusion_grid else (c.height, c.width)
        self.decompressor = Decompressor(c.channels, c.channels, size, base=min(c.decoder_base, *size),
                                         channels=c.decoder_channels, mapping_layers=c.mapping_layers)
        if c.fusion_dim:
            self.fusion: nn.Module = Fusion(c.channels, c.fusion_dim, c.fusion_heads)
        else:
            self.fusion = CrossAttentionBlock(c.channels, c.fusion_heads, mlp_ratio=0)
        if c.memory_init == "data":  # 0 until the first training batch has initialised the slots
            self.register_buffer("memory_ready", torch.zeros(()))
        self.progress = 0.0
        self.set_progress(1.0 if c.addressing == "annealed" else 0.0)
        self.diagnostics: dict[str, Tensor] = {}

    @classmethod
    def config_from(cls, values: dict[str, Any]) -> EDIConfig:
        """Config of a saved file; files written before the ``addressing`` option existed get
        :data:`LEGACY_OPTIONS` (the behaviour they were trained with) for every option they lack."""
        values = dict(values)
        if "addressing" not in values:
            values = {**LEGACY_OPTIONS, **values}
        return config_from_dict(EDIConfig, values)

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
        check_dtype(source_map, self, _OWNER, "source_map")
        b = source_map.shape[0]
        if driving_map is not None:
            check_feature_map(driving_map, _OWNER, "driving_map", c.channels, size, b)
        check_vectors(z_source, _OWNER, "z_source", c.motion_dim, b)
        check_vectors(z_driving, _OWNER, "z_driving", c.motion_dim, b)

    def motion_source_logits(self, f_source: Tensor, z_source: Tensor, z_driving: Tensor) -> Tensor:
        """Logits of ``Ω_ms`` (Eq. 7): query ``f_pi^s ⊕ (z_d - z_s)`` against ``M_ms``.  -> ``(B, S)``."""
        query = torch.cat([f_source, z_driving - z_source], dim=-1)
        return self.scale_ms.logits(query, self.memory_ms)

    def driving_logits(self, f_driving: Tensor) -> Tensor:
        """Logits of ``Ω_d`` (Eq. 5): query ``f_pi^d`` against ``M_d``.  -> ``(B, S)``."""
        return self.scale_d.logits(f_driving, self.memory_d)

    def set_progress(self, fraction: float) -> None:
        """Tell EDI how far training is (``0`` start, ``1`` end); drives ``train_recall="scheduled"``
        and ``addressing="annealed"``."""
        self.progress = min(1.0, max(0.0, float(fraction)))
        self.scale_d.ramp = self.scale_ms.ramp = self.ramp()

    def ramp(self) -> float:
        """Position on ``schedule_ramp`` at :attr:`progress`: 0 before ``start``, 1 after ``end``, linear between."""
        start, end = self.config.schedule_ramp
        if end <= start:
            return 1.0 if self.progress >= end else 0.0
        return min(1.0, max(0.0, (self.progress - start) / (end - start)))

    def recall_mix(self) -> float:
        """Weight of Eq. 9's recall in the decoded training token: 0 (``"driving"``), 1
        (``"motion_source"``), or :meth:`ramp` (``"scheduled"``)."""
        mode = self.config.train_recall
        if mode != "scheduled":
            return 0.0 if mode == "driving" else 1.0
        return self.ramp()

    @torch.no_grad()
    def init_passthrough(self) -> "EDI":
        """Zero the fusion's output projection so the fused map starts equal to the source map.

        For retrofitting a pretrained backbone: its decoder first sees its own skip feature, and EDI's
        contribution grows from zero (the output projection gets gradients from the first step, the
        rest of EDI from the second).
        """
        if isinstance(self.fusion, Fusion):
            self.fusion.zero_output()
        else:
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

    def _dmem(self, f_d: Tensor, recalled_d: Tensor) -> Tensor:
        loss = torch.linalg.vector_norm(f_d - recalled_d, dim=-1).mean()
        return loss / math.sqrt(self.config.channels) if self.config.dmem_scale == "rms" else loss

    @torch.no_grad()
    def _diagnose(self, f_d: Tensor, address_d: Tensor, address_ms: Tensor, recalled_d: Tensor,
                  recalled_ms: Tensor, mix: float) -> None:
        self.diagnostics = {
            "entropy_d": address_entropy(address_d), "entropy_ms": address_entropy(address_ms),
            "slot_usage_d": slot_usage(address_d), "slot_usage_ms": slot_usage(address_ms),
            "recall_gap_ms": recall_gap(recalled_ms, f_d), "recall_gap_d": recall_gap(recalled_d, f_d),
            "temperature_d": f_d.new_tensor(self.scale_d.current_temperature()),
            "temperature_ms": f_d.new_tensor(self.scale_ms.current_temperature()),
            "recall_mix": f_d.new_tensor(mix),
        }

    @torch.no_grad()
    def _init_memory_from_data(self, f_s: Tensor, f_d: Tensor, z_source: Tensor, z_driving: Tensor) -> None:
        """``memory_init="data"``: slot ``i`` = batch token ``i mod B`` + its random start at 10 % of the
        tokens' RMS, once (rank 0's batch under torch.distributed)."""
        idx = torch.arange(self.config.num_slots, device=f_d.device) % f_d.shape[0]
        for memory, tokens in ((self.memory_d, f_d), (self.memory_ms, torch.cat([f_s, z_driving - z_source], -1))):
            tokens = tokens.detach().to(memory.dtype)
            jitter = 0.1 * tokens.pow(2).mean().sqrt() * memory / memory.pow(2).mean().sqrt().clamp_min(1e-12)
            memory.copy_(tokens[idx] + jitter)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.broadcast(memory.data, src=0)
        self.memory_ready.fill_(1.0)

    # -- the two paths ----------------------------------------------------------------------------------
    def forward_train(self, source_map: Tensor, driving_map: Tensor, z_source: Tensor, z_driving: Tensor) -> EDIOutput:
        """Training path (self-reenactment pairs: source and driving frames of one identity).

        Args:
            source_map, driving_map: ``(B, C, h, w)`` identity-level maps of the source / driving frames.
            z_source, z_driving: ``(B, D)`` motion codes (EMI's ``z_s``, ``z_d``).

        Returns:
            :class:`EDIOutput` with ``losses = {"dmem": Eq. 6, "align": Eq. 8}`` and both addresses;
            the decoded token is ``(1 - a) Ω_d M_d + a Ω_ms M_d`` with ``a = recall_mix()``.  Also
            refreshes :attr:`diagnostics`.

        Raises:
            InputError: wrong shapes or batch sizes (message names EDI and the expected shapes).
        """
        self._check(source_map, z_source, z_driving, driving_map)
        c = self.config
        f_s, f_d = self.compressor(source_map), self.compressor(driving_map)
        if c.memory_init == "data" and not bool(self.memory_ready):
            self._init_memory_from_data(f_s, f_d, z_source, z_driving)
        logits_d = self.driving_logits(f_d)
        logits_ms = self.motion_source_logits(f_s, z_source, z_driving)
        address_d, address_ms = logits_d.softmax(dim=-1), logits_ms.softmax(dim=-1)
        recalled_d = memory_recall(address_d, self.memory_d)
        recalled_ms = memory_recall(address_ms, self.memory_d)
        target = logits_d.detach() if c.align_stop_gradient else logits_d
        losses = {"dmem": self._dmem(f_d, recalled_d),
                  "align": alignment_loss(logits_ms.log_softmax(dim=-1), target.log_softmax(dim=-1))}
        mix = self.recall_mix()
        if mix <= 0.0:
            token = recalled_d
        elif mix >= 1.0:
            token = recalled_ms
        else:
            token = torch.lerp(recalled_d, recalled_ms, mix)
        self._diagnose(f_d, address_d, address_ms, recalled_d, recalled_ms, mix)
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
