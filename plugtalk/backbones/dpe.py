"""DPE - Disentanglement of Pose and Expression for general video portrait editing (Pang et al., CVPR 2023).

A LIA-family generator with one motion dictionary and two heads + two synthesis networks: one
transfers the driving frame's expression, the other its head pose.  ``mode="both"`` chains them:
expression first, then the result is re-encoded and its pose edited (the official ``--face both``).

Naming note: in the released checkpoint the modules called ``mlp_pose`` / ``dec_pose`` are the ones
the official demo runs for expression transfer (``--face exp``), and ``mlp_exp`` / ``dec_exp`` for
pose transfer (``--face pose``).  plugtalk names them by what they do in that release:
``expression_head`` / ``expression_generator`` and ``pose_head`` / ``pose_generator``; the converter
maps the keys accordingly.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from ..errors import InputError
from ..layers import MotionDictionary, linear_stack
from .base import Backbone, BackboneConfig, Encoding, check_image, identity_tap
from .encoder import PyramidEncoder
from .keymaps import encoder_keys, linear_stack_keys, synthesis_keys
from .official import OfficialKeyMap
from .reenactment import Reenactment
from .synthesis import FlowSynthesis

__all__ = ["DPEConfig", "DPE", "MODES"]

MODES = ("expression", "pose", "both")


@dataclasses.dataclass
class DPEConfig(BackboneConfig):
    """DPE geometry; defaults are the official 256 px model (``run_demo.py``)."""

    motion_dim: int = 20   #: motion-dictionary directions
    mlp_depth: int = 5     #: EqualLinear layers latent -> coefficients
    head_depth: int = 3    #: EqualLinear layers of each (direction -> edit) head

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.motion_dim <= self.style_dim:
            raise ValueError(f"motion_dim must be in [1, style_dim={self.style_dim}] (the QR dictionary is "
                             f"style_dim x motion_dim), got {self.motion_dim}")


class DPE(Backbone):
    """DPE generator.

    Submodules: ``encoder``, ``motion_mlp``, ``dictionary``, ``expression_head`` + ``expression_generator``,
    ``pose_head`` + ``pose_generator``.
    """

    name = "dpe"
    config_class = DPEConfig

    def __init__(self, config: DPEConfig | None = None):
        super().__init__(config or DPEConfig())
        c = self.config
        d = c.style_dim
        self.encoder = PyramidEncoder(c)
        self.motion_mlp = linear_stack([d] * c.mlp_depth + [c.motion_dim])
        self.dictionary = MotionDictionary(d, c.motion_dim)
        self.expression_head = linear_stack([d] * (c.head_depth + 1))
        self.pose_head = linear_stack([d] * (c.head_depth + 1))
        self.expression_generator = FlowSynthesis(c)
        self.pose_generator = FlowSynthesis(c)

    def encode(self, image: Tensor) -> Encoding:
        """``(B, 3, S, S)`` in [-1, 1] -> latent ``(B, style_dim)`` and pyramid (coarse to fine)."""
        return self.encoder(image)

    def motion(self, latent: Tensor, driving_code: Tensor, stage: str, tap=identity_tap) -> Tensor:
        """The motion stage of one mode (used by :meth:`reenact` and the adapter):
        ``w + head_stage(D(MLP(z_d)))``.  ``tap`` sees ``driving.alpha``, ``driving.direction`` and the head's
        edit as ``direction``.  ``stage``: ``"expression"`` or ``"pose"``; shapes ``(B, style_dim)``."""
        alpha = tap("driving.alpha", self.motion_mlp(driving_code))
        direction = tap("driving.direction", self.dictionary(alpha))
        return latent + tap("direction", getattr(self, f"{stage}_head")(direction))

    def forward(self, source: Tensor, driving: Tensor, mode: str = "expression",
                return_intermediates: bool = False) -> Tensor | Reenactment:
        """Transfer the driving frame's expression, pose, or both onto ``source``.

        Args:
            source, driving: ``(B, 3, S, S)`` in [-1, 1].
            mode: ``"expression"`` (official ``--face exp``, the demo default), ``"pose"`` or ``"both"``.
            return_intermediates: return a :class:`Reenactment`; values include ``source.latent``,
                ``driving.latent``, ``driving.alpha``, ``driving.direction``, ``{expression,pose}.edit``
                (head outputs), ``latent`` (last synthesis style), ``pyramid.i``/``flow.i`` of the last
                synthesis, and for ``both`` the first stage's ``expression.latent``,
                ``expression.flow.i``, ``expression.image`` and the re-encoded ``reencoded.latent``.

        Raises:
            InputError: unknown mode, bad shapes/sizes/ranges, batch mismatch.
        """
        if mode not in MODES:
            raise InputError(f"DPE: mode must be one of {MODES}, got {mode!r}")
        s = self.config.size
        check_image(source, "source", s)
        check_image(driving, "driving", s, batch=source.shape[0])
        return self.reenact(source, driving, mode, return_intermediates)

    def reenact(self, source: Tensor, driving: Tensor, mode: str,
                return_intermediates: bool = False) -> Tensor | Reenactment:
        """:meth:`forward` without input validation (e.g. to chain on an unclamped output)."""
        src = self.encode(source)
        w_d = self.encode(driving).latent
        values = {"source.latent": src.latent, "driving.latent": w_d}
        stages = ("expression", "pose") if mode == "both" else (mode,)
        w, pyramid = src.latent, src.pyramid
        out = None
        for i, stage in enumerate(stages):
            if i > 0:  # re-encode the previous stage's (unclamped) image
                prev = out.image if return_intermediates else out
                enc = self.encode(prev)
                w, pyramid = enc.latent, enc.pyramid
                values["reencoded.latent"] = w
            latent = self.motion(w, w_d, stage,
                                 lambda k, v, s=stage: values.setdefault(f"{s}.edit" if k == "direction" else k, v))
            out = getattr(self, f"{stage}_generator")(latent, pyramid, return_intermediates=return_intermediates)
            if return_intermediates and len(stages) > 1 and i == 0:
                values[f"{stage}.latent"] = latent
                values[f"{stage}.image"] = out.image
                for j, f in enumerate(out.flows):
                    values[f"{stage}.flow.{j}"] = f
        if not return_intermediates:
            return out
        values["latent"] = latent
        return Reenactment.build(out, pyramid, values)

    @staticmethod
    def official_key_map(config: DPEConfig) -> OfficialKeyMap:
        """``networks/generator.py: Generator`` of OpenTalker/DPE (``'gen'``), with the head/decoder names
        mapped to the modes the released demo runs them in (see the module docstring)."""
        m = encoder_keys(config, "enc.net_app.", "encoder.")
        m.update(linear_stack_keys("mlp.", "motion_mlp.", config.mlp_depth))
        m.rename["dir.weight"] = "dictionary.weight"
        m.update(linear_stack_keys("mlp_pose.", "expression_head.", config.head_depth))
        m.update(linear_stack_keys("mlp_exp.", "pose_head.", config.head_depth))
        m.update(synthesis_keys(config, "dec_pose.", "expression_generator."))
        m.update(synthesis_keys(config, "dec_exp.", "pose_generator."))
        return m
