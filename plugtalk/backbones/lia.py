"""LIA - Latent Image Animator (Wang, Yang, Bremond, Dantcheva, ICLR 2022).

``image = G(w_s + D(alpha_d), pyramid_s)``: the driving frame's latent is mapped to motion
coefficients ``alpha_d`` by a linear MLP, turned into a latent direction through an orthogonal
motion dictionary ``D`` and added to the source latent ``w_s``; the flow-warping synthesis network
renders it from the source feature pyramid.  Relative motion (the official vox/taichi demo) uses
``w_s + D(alpha_d) - D(alpha_start) + D(alpha_s)``.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..layers import MotionDictionary, linear_stack
from .base import Backbone, BackboneConfig, Encoding, check_image, identity_tap
from .encoder import PyramidEncoder
from .keymaps import encoder_keys, linear_stack_keys, synthesis_keys
from .official import OfficialKeyMap
from .reenactment import Reenactment
from .synthesis import FlowSynthesis

__all__ = ["LIAConfig", "LIA"]


@dataclasses.dataclass
class LIAConfig(BackboneConfig):
    """LIA geometry; defaults are the official 256 px model (``run_demo.py``)."""

    motion_dim: int = 20    #: number of motion-dictionary directions (coefficients per frame)
    mlp_depth: int = 5      #: EqualLinear layers from latent to coefficients (official: 4 x 512 + 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.motion_dim <= self.style_dim:
            raise ValueError(f"motion_dim must be in [1, style_dim={self.style_dim}] (the QR dictionary is "
                             f"style_dim x motion_dim), got {self.motion_dim}")


class LIA(Backbone):
    """LIA generator.

    Submodules: ``encoder`` (:class:`PyramidEncoder`), ``motion_mlp`` (latent -> coefficients),
    ``dictionary`` (:class:`~plugtalk.layers.MotionDictionary`), ``generator`` (:class:`FlowSynthesis`).
    """

    name = "lia"
    config_class = LIAConfig

    def __init__(self, config: LIAConfig | None = None):
        super().__init__(config or LIAConfig())
        c = self.config
        self.encoder = PyramidEncoder(c)
        self.motion_mlp = linear_stack([c.style_dim] * c.mlp_depth + [c.motion_dim])
        self.dictionary = MotionDictionary(c.style_dim, c.motion_dim)
        self.generator = FlowSynthesis(c)

    # -- stages -------------------------------------------------------------------------------------
    def encode(self, image: Tensor) -> Encoding:
        """``(B, 3, S, S)`` in [-1, 1] -> latent ``(B, style_dim)`` and pyramid (coarse to fine)."""
        return self.encoder(image)

    def motion_coefficients(self, latent: Tensor) -> Tensor:
        """Latent ``(B, style_dim)`` -> motion coefficients ``alpha`` ``(B, motion_dim)``."""
        return self.motion_mlp(latent)

    def direction(self, alpha: Tensor) -> Tensor:
        """Coefficients ``(B, motion_dim)`` -> latent direction ``alpha @ Q^T`` ``(B, style_dim)``."""
        return self.dictionary(alpha)

    def motion(self, source_latent: Tensor, driving_code: Tensor, tap=identity_tap,
               start_code: Tensor | None = None) -> Tensor:
        """The motion stage (used by :meth:`forward` and the adapter): ``w_s + D(MLP(z_d))``; with
        ``start_code`` LIA's relative motion ``w_s + D(MLP(z_d)) - D(MLP(z_start)) + D(MLP(w_s))``.

        ``tap(name, value) -> value`` sees ``driving.alpha``, ``driving.direction`` (and ``start.*``,
        ``source.*`` when relative) and the total ``direction``.  Shapes: ``(B, style_dim)`` -> ``(B, style_dim)``.
        """
        alpha = tap("driving.alpha", self.motion_coefficients(driving_code))
        direction = tap("driving.direction", self.direction(alpha))
        if start_code is not None:
            d_start = tap("start.direction", self.direction(tap("start.alpha", self.motion_coefficients(start_code))))
            d_src = tap("source.direction", self.direction(tap("source.alpha", self.motion_coefficients(source_latent))))
            direction = direction - d_start + d_src
        return source_latent + tap("direction", direction)

    def decode(self, latent: Tensor, pyramid, return_intermediates: bool = False):
        """Render ``latent (B, style_dim)`` from the source ``pyramid``: ``(B, 3, S, S)``."""
        return self.generator(latent, pyramid, return_intermediates=return_intermediates)

    # -- end to end ---------------------------------------------------------------------------------
    def forward(self, source: Tensor, driving: Tensor, driving_start: Tensor | None = None,
                return_intermediates: bool = False) -> Tensor | Reenactment:
        """Animate ``source`` with the motion of ``driving``.

        Args:
            source: ``(B, 3, S, S)`` in [-1, 1].
            driving: ``(B, 3, S, S)`` in [-1, 1].
            driving_start: optional ``(B, 3, S, S)`` first driving frame for relative motion.
            return_intermediates: return a :class:`Reenactment` with named intermediates
                (``source.latent``, ``driving.alpha``, ``direction``, ``latent``, ``pyramid.i``, ``flow.i``, ...).

        Returns:
            ``(B, 3, S, S)``, roughly in [-1, 1] (not clamped).

        Raises:
            InputError: shapes, sizes, batch sizes or value ranges that do not fit.
        """
        s = self.config.size
        check_image(source, "source", s)
        check_image(driving, "driving", s, batch=source.shape[0])
        if driving_start is not None:
            check_image(driving_start, "driving_start", s, batch=source.shape[0])
        src = self.encode(source)
        start = None if driving_start is None else self.encode(driving_start).latent
        values = {"source.latent": src.latent}
        latent = self.motion(src.latent, self.encode(driving).latent, lambda k, v: values.setdefault(k, v), start)
        if not return_intermediates:
            return self.decode(latent, src.pyramid)
        out = self.decode(latent, src.pyramid, return_intermediates=True)
        values["latent"] = latent
        return Reenactment.build(out, src.pyramid, values)

    # -- official checkpoints -----------------------------------------------------------------------
    @staticmethod
    def official_key_map(config: LIAConfig) -> OfficialKeyMap:
        """``networks/generator.py: Generator`` of wyhsirius/LIA: ``enc.net_app``, ``enc.fc``, ``dec.*``."""
        m = encoder_keys(config, "enc.net_app.", "encoder.")
        m.update(linear_stack_keys("enc.fc.", "motion_mlp.", config.mlp_depth))
        m.rename["dec.direction.weight"] = "dictionary.weight"
        m.update(synthesis_keys(config, "dec.", "generator."))
        return m
