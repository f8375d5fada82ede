"""What every backbone shares: a dataclass config, input checks, and save/load in plugtalk's format."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from ..weights.configurable import ConfigDict, ConfigurableModule
from ..errors import InputError

__all__ = ["BackboneConfig", "Backbone", "Encoding", "check_image", "identity_tap"]


def identity_tap(name: str, value: Tensor) -> Tensor:
    """The do-nothing ``tap(name, value) -> value`` of the motion stages (adapters route values through
    named hook points with a real one)."""
    return value


@dataclasses.dataclass
class BackboneConfig(ConfigDict):
    """Geometry shared by the LIA family.

    Attributes:
        size: image resolution (square, a power of two >= 8); official models use 256.
        style_dim: width of the latent / style vector ``w`` (official: 512).
        channel_base, channel_max: feature width at resolution ``r`` is
            ``min(channel_max, channel_base // r)``; the official 16384 / 512 give
            512 (<= 32 px), 256 (64), 128 (128), 64 (256).  Shrink both for tiny test models.
    """

    size: int = 256
    style_dim: int = 512
    channel_base: int = 16384
    channel_max: int = 512

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        for name in ("style_dim", "channel_base", "channel_max"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def channels(self, resolution: int) -> int:
        return max(1, min(self.channel_max, self.channel_base // resolution))

    @property
    def pyramid_resolutions(self) -> tuple[int, ...]:
        """Resolutions of the feature pyramid, coarse to fine: ``(8, 16, ..., size)``."""
        return tuple(2**i for i in range(3, int(math.log2(self.size)) + 1))




class Encoding(NamedTuple):
    """Output of a backbone's encoder for one image batch."""

    latent: Tensor                 #: ``(B, style_dim)`` appearance latent ``w``
    pyramid: tuple[Tensor, ...]    #: feature maps, coarse to fine: ``(B, C_r, r, r)`` for r = 8 .. size


def check_image(x: Any, name: str, size: int | None = None, batch: int | None = None, tol: float = 1e-3) -> Tensor:
    """Validate an image batch ``(B, 3, H, W)`` of floats in ``[-1, 1]``.

    Raises:
        InputError: not a float tensor, wrong rank/channels/size/batch, or values outside
            ``[-1, 1]`` (by more than ``tol``) - e.g. a ``[0, 255]`` image.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{name}: expected a torch.Tensor (B, 3, H, W) in [-1, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name}: expected a float tensor in [-1, 1], got dtype {x.dtype} "
                         "(convert uint8 images with x.float() / 127.5 - 1)")
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"{name}: expected shape (B, 3, H, W), got {tuple(x.shape)}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise InputError(f"{name}: expected {size}x{size} images, got {x.shape[-2]}x{x.shape[-1]} "
                         "(crop/resize the face first, e.g. with plugtalk.face)")
    if batch is not None and x.shape[0] != batch:
        raise InputError(f"{name}: batch size {x.shape[0]} does not match the source batch size {batch}")
    if x.numel():
        lo, hi = torch.aminmax(x.detach())
        if not (torch.isfinite(lo) and torch.isfinite(hi)):
            raise InputError(f"{name}: contains NaN or inf")
        if lo < -1 - tol or hi > 1 + tol:
            raise InputError(f"{name}: values must lie in [-1, 1], got [{lo.item():.3g}, {hi.item():.3g}] "
                             "(convert [0, 255] images with x / 127.5 - 1)")
    return x


class Backbone(ConfigurableModule):
    """Base class of the LIA-family backbones: a :class:`BackboneConfig`, a registry ``name`` and
    plugtalk-format save/load (``save_pretrained`` / ``from_pretrained``)."""

    kind = "backbone"
    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig

    @property
    def image_size(self) -> int:
        return self.config.size
