"""The adapter protocol: what a backbone must offer to be retrofitted with EMI/EDI and probed.

An animator of the LIA family computes ``I = G(w_s + M(m_d), pyramid_s)``: the source's latent
``w_s`` and feature pyramid, and a motion ``M`` computed from the driving frame's *motion input*
``m_d`` (its latent, for LIA/DPE/EDTalk).  An adapter exposes exactly those stages:

* :meth:`Adapter.encode` - image -> :class:`~plugtalk.backbones.Encoding` (latent + pyramid);
* :meth:`Adapter.motion_input` - the value EMI's motion code replaces (default: the latent);
* :meth:`Adapter.motion` - motion codes of the named drivers -> :class:`Motion` (the decoder style
  and any extra decoder condition), keeping the backbone's own heads (EDTalk's mouth/pose/expression
  heads keep working, so decoupled control survives);
* :meth:`Adapter.decode` - render from a :class:`Motion` and a (possibly replaced) skip pyramid;
* :attr:`Adapter.feature_spec` - the pyramid description EMI/EDI and the probe are built from.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..backbones.base import Encoding, identity_tap
from ..errors import InputError
from ..features import FeatureSpec, LevelInfo
from .controls import Control

__all__ = ["Motion", "Adapter", "Tap", "identity_tap", "pyramid_spec"]

#: ``tap(name, value) -> value``: routes an intermediate value through a named hook point.
Tap = Callable[[str, Tensor], Tensor]


@dataclasses.dataclass
class Motion:
    """What the decoder needs besides the skip pyramid."""

    latent: Tensor                                            #: ``(B, style_dim)`` decoder style
    condition: dict[str, Tensor] = dataclasses.field(default_factory=dict)  #: extra decoder inputs


def pyramid_spec(resolutions: Sequence[int], channels: Sequence[int], latent_dim: int, motion_dim: int,
                 module: str = "encoder", identity_resolution: int = 32) -> FeatureSpec:
    """FeatureSpec of a LIA-family pyramid (levels ``pyramid.i``, coarse to fine).

    The identity level defaults to the 32x32 map (FixTalk's ``f_4`` at 256 px); at other sizes the
    level whose resolution is closest to ``identity_resolution * size / 256``.
    """
    size = max(resolutions)
    target = identity_resolution * size / 256
    identity = min(range(len(resolutions)), key=lambda i: (abs(resolutions[i] - target), -resolutions[i]))
    levels = tuple(LevelInfo(f"pyramid.{i}", c, r, r, module) for i, (r, c) in enumerate(zip(resolutions, channels)))
    return FeatureSpec(levels=levels, latent_dim=latent_dim, motion_dim=motion_dim, identity_level=identity)


class Adapter(nn.Module):
    """Base class of backbone adapters.

    Subclasses set ``drivers`` (the names of the driving inputs, e.g. ``("driving",)`` or EDTalk's
    ``("mouth", "pose", "expression")``) and implement :meth:`motion` and :meth:`decode`.
    """

    drivers: ClassVar[tuple[str, ...]] = ("driving",)
    #: Drivers that a single ``driving=`` frame batch fills when not given separately.
    driving_fills: ClassVar[tuple[str, ...]] = ("driving",)
    #: Controls (keyword arguments of :meth:`motion`) that replace a driver, e.g. ``mouth_coefficients``.
    control_replaces: ClassVar[dict[str, str]] = {}
    #: Names of the values :meth:`motion` routes through its ``tap`` argument.
    motion_taps: ClassVar[tuple[str, ...]] = ()
    #: Source-branch counterparts of motion values, computed by :meth:`motion` only for the probe (see
    #: :meth:`paired_taps`); the render never reads them.
    source_motion_taps: ClassVar[tuple[str, ...]] = ()
    #: :meth:`motion` also receives ``images={"source": ..., driver: ...}`` (for adapters that rerun the model).
    wants_images: ClassVar[bool] = False
    #: :meth:`motion` also receives ``encodings={driver: Encoding}``, the drivers' encodings as the
    #: retrofitted model holds them (hook points applied), for adapters that rerun the model.
    wants_encodings: ClassVar[bool] = False
    #: Whether EMI can be plugged in: EMI computes motion codes from driving *images*; an animator driven
    #: by other signals only (GoHD's coefficient windows) has none to replace.
    accepts_emi: ClassVar[bool] = True
    #: The driving controls it reads besides driver videos (:class:`~plugtalk.adapters.controls.Control`:
    #: EDTalk's audio and expression weights, GoHD's coefficients and gaze); ``animate(controls=...)``.
    controls: ClassVar[tuple[Control, ...]] = ()

    def __init__(self, backbone: nn.Module, identity_level: int | None = None):
        """
        Args:
            backbone: the animator.
            identity_level: index (coarse to fine) of the pyramid level EMI reads and EDI restores, e.g. the
                level ``plugtalk probe`` ranks first; ``None``: the backbone's default (the 32x32 map at 256 px,
                FixTalk's ``f_4``, scaled with the image size).

        Raises:
            InputError: ``identity_level`` is not a level of this backbone.
        """
        super().__init__()
        self.backbone = backbone
        self.identity_level = identity_level
        if identity_level is not None:
            levels = len(self._default_spec().levels)
            if not isinstance(identity_level, int) or not 0 <= identity_level < levels:
                raise InputError(f"{type(self).__name__}: identity_level must be an integer in [0, {levels}), "
                                 f"got {identity_level!r}")

    # -- description ----------------------------------------------------------------------------------
    def _default_spec(self) -> FeatureSpec:
        c = self.backbone.config
        res = c.pyramid_resolutions
        return pyramid_spec(res, [c.channels(r) for r in res], c.style_dim, c.style_dim)

    @property
    def feature_spec(self) -> FeatureSpec:
        spec = self._default_spec()
        if self.identity_level is not None:
            spec = dataclasses.replace(spec, identity_level=self.identity_level)
        return spec

    @property
    def image_size(self) -> int:
        return self.backbone.config.size

    def control(self, name: str) -> Control:
        """The declared control ``name``.

        Raises:
            InputError: the adapter has no such control (the message lists the ones it has).
        """
        for c in self.controls:
            if c.name == name:
                return c
        have = ", ".join(c.name for c in self.controls) or "none"
        raise InputError(f"{type(self.backbone).__name__} has no control {name!r} (its controls: {have})")

    def tap_names(self) -> list[str]:
        """Names of the motion values :meth:`motion` routes through its ``tap`` argument."""
        return [*self.motion_taps, *self.source_motion_taps]

    def paired_taps(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Motion values the probe can swap between branches: ``{tap name: (source hook point, driving hook
        points)}`` (EDTalk: the FDM outputs).  Default: none."""
        return {}

    # -- stages ---------------------------------------------------------------------------------------
    def encode(self, image: Tensor) -> Encoding:
        """``(B, 3, S, S)`` in [-1, 1] -> latent + pyramid (coarse to fine)."""
        return self.backbone.encode(image)

    def motion_input(self, encoding: Encoding) -> Tensor:
        """The backbone's plain motion input for an encoded frame (what EMI's code replaces): the latent."""
        return encoding.latent

    def control_codes(self, controls: Mapping[str, Any], tap: Tap = identity_tap
                      ) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Motion codes computed from non-image controls (GoHD: the coefficient window's embedding), and the
        controls left for :meth:`motion`.  Default: none."""
        return {}, dict(controls)

    def motion(self, source: Encoding, source_code: Tensor, codes: Mapping[str, Tensor], tap: Tap = identity_tap,
               **controls: Any) -> Motion:
        """Motion codes ``(B, motion_dim)`` of the drivers in ``codes`` -> decoder :class:`Motion`."""
        raise NotImplementedError

    def example_inputs(self, batch: int, generator: Any = None) -> dict[str, Tensor]:
        """Random driving inputs for :meth:`Retrofitted.forward` (benchmarks): a driving frame batch."""
        s = self.image_size
        return {"driving": torch.rand(batch, 3, s, s, generator=generator) * 2 - 1}

    def decode(self, motion: Motion, pyramid: Sequence[Tensor]) -> Tensor:
        """Render ``(B, 3, S, S)`` from ``motion`` and the skip ``pyramid`` (coarse to fine)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Constructor options besides the backbone (saved with retrofitted checkpoints)."""
        return {} if self.identity_level is None else {"identity_level": self.identity_level}

    def check_controls(self, controls: Mapping[str, Any]) -> None:
        if controls:
            raise InputError(f"{type(self).__name__}: unknown option(s) {sorted(controls)}")
