"""Adapters for plugtalk's LIA, EDTalk and DPE backbones."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import Tensor

from ..backbones import DPE, LIA, EDTalk, Encoding
from ..backbones.dpe import MODES as DPE_MODES
from ..backbones.edtalk import BANKS
from ..errors import InputError
from .base import Adapter, Motion, Tap, identity_tap
from .edtalk_controls import AUDIO, AUDIO_POSE, EXPRESSION_WEIGHTS

__all__ = ["LIAAdapter", "EDTalkAdapter", "DPEAdapter", "adapter_for"]


class LIAAdapter(Adapter):
    """LIA: ``latent = w_s + D(MLP(z_d))`` (relative motion: see :meth:`Retrofitted.forward`'s ``start``)."""

    drivers = ("driving",)
    motion_taps = ("driving.alpha", "driving.direction", "direction")

    def __init__(self, backbone: LIA, identity_level: int | None = None):
        if not isinstance(backbone, LIA):
            raise TypeError(f"LIAAdapter needs a LIA backbone, got {type(backbone).__name__}")
        super().__init__(backbone, identity_level)

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               **controls: Any) -> Motion:
        self.check_controls(controls)
        if "driving" not in codes:
            raise InputError("LIAAdapter: a 'driving' motion code is required")
        return Motion(self.backbone.motion(source.latent, codes["driving"], tap))

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        return self.backbone.decode(motion.latent, pyramid)


class EDTalkAdapter(Adapter):
    """EDTalk: each bank's coefficients come from its own driver's motion code through the shared trunk
    and that bank's head, so mouth / pose / expression stay separately controllable.  Coefficients can
    also be given directly: ``mouth_coefficients`` (e.g. from audio), ``pose_coefficients``,
    ``expression_weights``.  A bank with neither keeps the source's own motion."""

    drivers = BANKS
    driving_fills = BANKS
    control_replaces = {"mouth_coefficients": "mouth", "pose_coefficients": "pose", "expression_weights": "expression"}
    controls = (AUDIO, AUDIO_POSE, EXPRESSION_WEIGHTS)
    motion_taps = ("mouth.alpha", "pose.alpha", "expression.alpha", "alpha", "direction")
    #: The FDM outputs of the source frame (FixTalk suppl. 1.1 / 2.7: each CLN's weights ``W`` and the motion
    #: feature ``f = sum_i w_i b_i``), computed from the source's motion code only while a hook watches them.
    source_motion_taps = tuple(f"source.fdm.{t}" for t in motion_taps)

    def paired_taps(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """The FDM outputs as swappable taps: ``fdm.{mouth,pose,expression}.alpha`` (per-bank coefficients,
        ``(B, 20)``, ``(B, 6)``, ``(B, 10)``), ``fdm.alpha`` (all of them, ``(B, 36)``) and ``fdm.direction``
        (the combined direction ``alpha Q^T`` added to the source latent, ``(B, style_dim)``).  ``s->d``
        writes the source's value into the driving branch (FixTalk suppl. 2.7 case (4): ``f^s`` in place of
        ``f^d``); ``d->s`` writes into source-branch values the render never reads (reported inert)."""
        return {f"fdm.{t}": (f"source.fdm.{t}", (t,)) for t in self.motion_taps}

    def __init__(self, backbone: EDTalk, identity_level: int | None = None):
        if not isinstance(backbone, EDTalk):
            raise TypeError(f"EDTalkAdapter needs an EDTalk backbone, got {type(backbone).__name__}")
        super().__init__(backbone, identity_level)

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               mouth_coefficients: Tensor | None = None, pose_coefficients: Tensor | None = None,
               expression_weights: Tensor | None = None, **controls: Any) -> Motion:
        self.check_controls(controls)
        m = self.backbone
        given = {"mouth": mouth_coefficients, "pose": pose_coefficients, "expression": expression_weights}
        alphas = {}
        for bank in BANKS:
            if given[bank] is not None:
                alphas[bank] = given[bank]
                if bank in codes:
                    raise InputError(f"EDTalkAdapter: the {bank} bank got both frames and coefficients")
            else:
                alphas[bank] = m.bank_coefficients(codes.get(bank, source_code), bank)[1]
        latent, expression_direction = m.motion(source.latent, alphas, tap)
        watched = getattr(tap, "watched", None)
        if watched is not None and any(watched(n) for n in self.source_motion_taps):
            # the source frame's own FDM outputs, for the probe only: nothing below reads them
            own = {bank: m.bank_coefficients(source_code, bank)[1] for bank in BANKS}
            m.motion(source.latent, own, lambda name, value: tap(f"source.fdm.{name}", value))
        return Motion(latent, {"expression": expression_direction})

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        return self.backbone.decode(motion.latent, pyramid, motion.condition["expression"])


class DPEAdapter(Adapter):
    """DPE in one mode (``"expression"`` or ``"pose"``): ``latent = w_s + head(D(MLP(z_d)))``.

    ``"both"`` chains two renders with a re-encode in between; retrofit each stage instead (two
    retrofitted models, or run the expression model's output through the pose model).
    """

    drivers = ("driving",)
    motion_taps = ("driving.alpha", "driving.direction", "direction")

    def __init__(self, backbone: DPE, mode: str = "expression", identity_level: int | None = None):
        if not isinstance(backbone, DPE):
            raise TypeError(f"DPEAdapter needs a DPE backbone, got {type(backbone).__name__}")
        if mode not in DPE_MODES[:2]:
            raise InputError(f"DPEAdapter: mode must be 'expression' or 'pose' (got {mode!r}); "
                             "'both' chains two renders - retrofit each stage")
        super().__init__(backbone, identity_level)
        self.mode = mode

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               **controls: Any) -> Motion:
        self.check_controls(controls)
        if "driving" not in codes:
            raise InputError("DPEAdapter: a 'driving' motion code is required")
        return Motion(self.backbone.motion(source.latent, codes["driving"], self.mode, tap))

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        return getattr(self.backbone, f"{self.mode}_generator")(motion.latent, pyramid)

    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, **super().options()}

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def adapter_for(backbone, **kwargs) -> Adapter:
    """The adapter of a registered plugtalk backbone instance, from its registry entry (``kwargs``: e.g.
    DPE's ``mode``, ``identity_level``)."""
    from ..backbones import backbone_entry, list_backbones

    name = getattr(backbone, "name", None)
    entry = backbone_entry(name) if name in list_backbones() else None
    if entry is None or entry.adapter is None or not isinstance(backbone, entry.cls):
        raise TypeError(f"no adapter for {type(backbone).__name__}; wrap it with plugtalk.adapters.HookAdapter")
    return entry.adapter_class()(backbone, **kwargs)
