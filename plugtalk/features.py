"""Descriptions of an animator's feature pyramid (in the spirit of timm's ``FeatureInfo``).

A :class:`FeatureSpec` is what EMI, EDI and the probe need to know about a backbone, without
importing it: the pyramid levels (name, channels, resolution, module path), the latent width, the
width of the motion input the backbone expects, and which level carries identity.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

__all__ = ["LevelInfo", "FeatureSpec"]


@dataclasses.dataclass(frozen=True)
class LevelInfo:
    """One pyramid level: ``(B, channels, height, width)`` at tap ``name`` (module path ``module``)."""

    name: str
    channels: int
    height: int
    width: int
    module: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What a retrofit module needs to know about a backbone.

    Attributes:
        levels: pyramid levels, coarse to fine (the order the decoder consumes them).
        latent_dim: width of the encoder's latent ``w``.
        motion_dim: width of the motion input EMI's code replaces (the backbone's motion-MLP input).
        identity_level: index into ``levels`` of the identity-carrying map (FixTalk's ``f_4``,
            the 32x32x512 map at 256 px; find yours with ``plugtalk probe``).
    """

    levels: tuple[LevelInfo, ...]
    latent_dim: int
    motion_dim: int
    identity_level: int

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("FeatureSpec needs at least one pyramid level")
        if not 0 <= self.identity_level < len(self.levels):
            raise ValueError(f"identity_level {self.identity_level} out of range for {len(self.levels)} levels")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(lv.channels for lv in self.levels)

    @property
    def identity(self) -> LevelInfo:
        return self.levels[self.identity_level]

    def level_index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        raise KeyError(f"no pyramid level named {name!r}; levels: {[lv.name for lv in self.levels]}")

    def check(self, pyramid: Sequence[Any], owner: str = "FeatureSpec") -> None:
        """Raise ``InputError`` naming ``owner`` if ``pyramid`` tensors do not match the spec."""
        from .errors import InputError

        if len(pyramid) != len(self.levels):
            raise InputError(f"{owner}: expected {len(self.levels)} pyramid levels "
                             f"{[lv.shape for lv in self.levels]}, got {len(pyramid)}")
        batch = None
        for lv, t in zip(self.levels, pyramid):
            if tuple(t.shape[1:]) != lv.shape:
                raise InputError(f"{owner}: level {lv.name!r} should be (B, {lv.channels}, {lv.height}, {lv.width}), "
                                 f"got {tuple(t.shape)}")
            if batch is not None and t.shape[0] != batch:
                raise InputError(f"{owner}: pyramid levels disagree in batch size ({batch} vs {t.shape[0]})")
            batch = t.shape[0]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        return cls(levels=tuple(LevelInfo(**lv) for lv in d["levels"]), latent_dim=d["latent_dim"],
                   motion_dim=d["motion_dim"], identity_level=d["identity_level"])
