"""EDTalk - Efficient Disentanglement for emotional Talking head synthesis (Tan et al., ECCV 2024).

A LIA-family generator whose motion space is split into three orthogonal banks - mouth (20),
pose (6) and expression (10) directions - so each can be driven by a different source.  A shared
linear trunk maps a driver's latent to features, and a linear head per bank predicts that bank's
coefficients.  The concatenated coefficients ``alpha`` select ``alpha @ Q^T`` from the QR basis of
all 36 directions; that direction is added to the source latent, and the expression part alone
conditions expression blocks applied to the source features (EDTalk Sec. 3.2-3.3).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..layers import linear_stack, orthonormal_basis
from .base import Backbone, BackboneConfig, Encoding, check_image, identity_tap
from .encoder import PyramidEncoder
from .keymaps import encoder_keys, linear_stack_keys, synthesis_keys
from .official import OfficialKeyMap
from .reenactment import Reenactment
from .synthesis import FlowSynthesis

__all__ = ["EDTalkConfig", "EDTalk", "MotionBanks", "BANKS"]

BANKS = ("mouth", "pose", "expression")


@dataclasses.dataclass
class EDTalkConfig(BackboneConfig):
    """EDTalk geometry; defaults are the official 256 px model (``demo_EDTalk_V.py``)."""

    mouth_dim: int = 20         #: mouth-bank directions
    pose_dim: int = 6           #: pose-bank directions
    expression_dim: int = 10    #: expression-bank directions
    trunk_depth: int = 4        #: shared EqualLinear layers (latent -> motion features)
    head_depth: int = 3         #: EqualLinear layers per bank head
    expression_hidden: int = 128  #: hidden width of the expression blocks' AdaIN MLP

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.mouth_dim, self.pose_dim, self.expression_dim) < 1 or self.num_directions > self.style_dim:
            raise ValueError(f"bank sizes must be positive and sum to at most style_dim={self.style_dim} "
                             f"(the QR basis is style_dim x {self.num_directions})")

    @property
    def num_directions(self) -> int:
        return self.mouth_dim + self.pose_dim + self.expression_dim

    def bank_slice(self, bank: str) -> slice:
        starts = {"mouth": 0, "pose": self.mouth_dim, "expression": self.mouth_dim + self.pose_dim}
        sizes = {"mouth": self.mouth_dim, "pose": self.pose_dim, "expression": self.expression_dim}
        return slice(starts[bank], starts[bank] + sizes[bank])


class MotionBanks(nn.Module):
    """Three direction banks orthonormalised together: ``Q = QR([mouth | pose | expression] + 1e-8)``.

    ``forward(alpha (B, 36)) -> (B, style_dim)``; :meth:`expression_direction` keeps only the
    expression terms (the decoder's expression condition).
    """

    def __init__(self, latent_dim: int, mouth_dim: int, pose_dim: int, expression_dim: int):
        super().__init__()
        self.mouth = nn.Parameter(torch.randn(latent_dim, mouth_dim))
        self.pose = nn.Parameter(torch.randn(latent_dim, pose_dim))
        self.expression = nn.Parameter(torch.randn(latent_dim, expression_dim))

    def basis(self) -> Tensor:
        """Orthonormal basis ``(style_dim, 36)``, columns ordered mouth, pose, expression."""
        return orthonormal_basis(torch.cat([self.mouth, self.pose, self.expression], dim=1))

    def forward(self, alpha: Tensor, basis: Tensor | None = None) -> Tensor:
        q = self.basis() if basis is None else basis
        if alpha.shape[-1] != q.shape[1]:
            raise InputError(f"MotionBanks: expected {q.shape[1]} coefficients, got {tuple(alpha.shape)}")
        return alpha @ q.t()

    def expression_direction(self, alpha: Tensor, basis: Tensor | None = None) -> Tensor:
        q = self.basis() if basis is None else basis
        k = self.expression.shape[1]
        return alpha[:, -k:] @ q[:, -k:].t()


class EDTalk(Backbone):
    """EDTalk video generator with decoupled mouth / pose / expression control.

    Submodules: ``encoder``, ``motion_trunk`` (shared), ``mouth_head``, ``pose_head``,
    ``expression_head``, ``banks`` (:class:`MotionBanks`), ``generator`` (:class:`FlowSynthesis` with
    expression blocks).
    """

    name = "edtalk"
    config_class = EDTalkConfig

    def __init__(self, config: EDTalkConfig | None = None):
        super().__init__(config or EDTalkConfig())
        c = self.config
        d = c.style_dim
        self.encoder = PyramidEncoder(c)
        self.motion_trunk = linear_stack([d] * (c.trunk_depth + 1))
        self.mouth_head = linear_stack([d] * c.head_depth + [c.mouth_dim])
        self.pose_head = linear_stack([d] * c.head_depth + [c.pose_dim])
        self.expression_head = linear_stack([d] * c.head_depth + [c.expression_dim])
        self.banks = MotionBanks(d, c.mouth_dim, c.pose_dim, c.expression_dim)
        self.generator = FlowSynthesis(c, condition_dim=d, expression_hidden=c.expression_hidden)

    # -- stages -------------------------------------------------------------------------------------
    def encode(self, image: Tensor) -> Encoding:
        """``(B, 3, S, S)`` in [-1, 1] -> latent ``(B, style_dim)`` and pyramid (coarse to fine)."""
        return self.encoder(image)

    def bank_coefficients(self, latent: Tensor, bank: str) -> tuple[Tensor, Tensor]:
        """Latent ``(B, style_dim)`` -> (trunk features ``(B, style_dim)``, coefficients of ``bank``)."""
        trunk = self.motion_trunk(latent)
        return trunk, getattr(self, f"{bank}_head")(trunk)

    def motion(self, source_latent: Tensor, alphas: dict[str, Tensor], tap=identity_tap) -> tuple[Tensor, Tensor]:
        """The motion stage (used by :meth:`reenact` and the adapter): per-bank coefficients ``alphas``
        (``mouth (B, 20)``, ``pose (B, 6)``, ``expression (B, 10)``) -> (latent ``w_s + alpha Q^T``,
        expression condition ``alpha_exp Q_exp^T``), both ``(B, style_dim)``.  ``tap`` sees ``{bank}.alpha``,
        ``alpha`` and ``direction``."""
        alpha = tap("alpha", torch.cat([tap(f"{bank}.alpha", alphas[bank]) for bank in BANKS], dim=1))
        q = self.banks.basis()
        direction = tap("direction", self.banks(alpha, q))
        return source_latent + direction, self.banks.expression_direction(alpha, q)

    def decode(self, latent: Tensor, pyramid, expression_direction: Tensor, return_intermediates: bool = False):
        """Render ``latent (B, style_dim)`` from the source ``pyramid`` with the expression condition
        ``(B, style_dim)``: ``(B, 3, S, S)``."""
        return self.generator(latent, pyramid, expression_direction, return_intermediates=return_intermediates)

    # -- end to end ---------------------------------------------------------------------------------
    def forward(self, source: Tensor, mouth: Tensor | None = None, pose: Tensor | None = None,
                expression: Tensor | None = None, *, driving: Tensor | None = None,
                mouth_coefficients: Tensor | None = None, pose_coefficients: Tensor | None = None,
                expression_weights: Tensor | None = None,
                return_intermediates: bool = False) -> Tensor | Reenactment:
        """Animate ``source`` with separately driven mouth, pose and expression.

        Each bank is driven by frames (``mouth`` / ``pose`` / ``expression``: ``(B, 3, S, S)`` in [-1, 1])
        or directly by coefficients (``mouth_coefficients (B, 20)`` e.g. from audio,
        ``pose_coefficients (B, 6)``, ``expression_weights (B, 10)`` e.g. EDTalk's predefined
        expressions).  ``driving`` drives every bank not given otherwise.  A bank with no driver keeps
        the source's own motion.

        Args:
            return_intermediates: return a :class:`Reenactment` whose values include
                ``{bank}.latent``, ``{bank}.trunk``, ``{bank}.alpha``, ``alpha`` (B, 36), ``direction``,
                ``expression_direction``, ``latent``, ``pyramid.i``, ``feature.i``, ``flow.i``.

        Returns:
            ``(B, 3, S, S)``, roughly in [-1, 1] (not clamped).

        Raises:
            InputError: a bank given both frames and coefficients, bad shapes/sizes/ranges, batch mismatch.
        """
        s, c = self.config.size, self.config
        check_image(source, "source", s)
        b = source.shape[0]
        frames = {"mouth": mouth, "pose": pose, "expression": expression}
        coeffs = {"mouth": mouth_coefficients, "pose": pose_coefficients, "expression": expression_weights}
        for bank in BANKS:
            if frames[bank] is not None and coeffs[bank] is not None:
                raise InputError(f"EDTalk: give the {bank} bank frames or coefficients, not both")
            if frames[bank] is None and coeffs[bank] is None and driving is not None:
                frames[bank] = driving
            if frames[bank] is not None:
                check_image(frames[bank], bank, s, batch=b)
            if coeffs[bank] is not None:
                width = c.bank_slice(bank).stop - c.bank_slice(bank).start
                if coeffs[bank].shape != (b, width):
                    raise InputError(f"EDTalk: {bank} coefficients should be ({b}, {width}), "
                                     f"got {tuple(coeffs[bank].shape)}")
        return self.reenact(source, frames, coeffs, return_intermediates)

    def reenact(self, source: Tensor, frames: dict[str, Tensor | None], coefficients: dict[str, Tensor | None],
                return_intermediates: bool = False) -> Tensor | Reenactment:
        """:meth:`forward` without input validation (frames/coefficients keyed by bank name)."""
        src = self.encode(source)
        latents: dict[int, Tensor] = {id(source): src.latent}
        values: dict[str, Tensor] = {"source.latent": src.latent}
        alphas = {}
        for bank in BANKS:
            given = coefficients.get(bank)
            if given is None:
                image = frames.get(bank)
                image = source if image is None else image
                if id(image) not in latents:  # one encoder pass per distinct driving tensor
                    latents[id(image)] = self.encode(image).latent
                trunk, given = self.bank_coefficients(latents[id(image)], bank)
                values.update({f"{bank}.latent": latents[id(image)], f"{bank}.trunk": trunk})
            alphas[bank] = given
        latent, expression_direction = self.motion(src.latent, alphas, lambda k, v: values.setdefault(k, v))
        if not return_intermediates:
            return self.decode(latent, src.pyramid, expression_direction)
        out = self.decode(latent, src.pyramid, expression_direction, return_intermediates=True)
        values.update({"expression_direction": expression_direction, "latent": latent})
        return Reenactment.build(out, src.pyramid, values)

    # -- official checkpoints -----------------------------------------------------------------------
    @staticmethod
    def official_key_map(config: EDTalkConfig) -> OfficialKeyMap:
        """``networks/generator.py: Generator`` of tanshuai0219/EDTalk (``EDTalk.pt``'s ``'gen'``)."""
        m = encoder_keys(config, "enc.net_app.", "encoder.")
        m.update(linear_stack_keys("fc.", "motion_trunk.", config.trunk_depth))
        for off, ours in (("lip_fc.", "mouth_head."), ("pose_fc.", "pose_head."), ("exp_fc.", "expression_head.")):
            m.update(linear_stack_keys(off, ours, config.head_depth))
        mp = config.mouth_dim + config.pose_dim
        m.split["direction_lipnonlip.weight"] = [("banks.mouth", 1, 0, config.mouth_dim),
                                                 ("banks.pose", 1, config.mouth_dim, mp)]
        m.rename["direction_exp.weight"] = "banks.expression"
        m.update(synthesis_keys(config, "dec.", "generator.", expression=True))
        return m
