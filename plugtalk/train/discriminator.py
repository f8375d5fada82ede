"""StyleGAN2-type image discriminator for the adversarial loss (Karras et al., CVPR 2020, Fig. 7b;
the discriminator LIA, DPE and FixTalk train against).

A 1x1 stem, one residual down-sampling block per octave down to 4x4, minibatch standard deviation,
a 3x3 conv and a two-layer equalised-lr head giving one logit per image.
"""

from __future__ import annotations

import dataclasses
import torch
from torch import Tensor, nn

from ..backbones.base import check_image
from ..weights.configurable import ConfigDict, ConfigurableModule
from ..layers import ConvLayer, EqualLinear, ResBlock

__all__ = ["DiscriminatorConfig", "Discriminator", "minibatch_stddev"]


@dataclasses.dataclass
class DiscriminatorConfig(ConfigDict):
    """Geometry of a :class:`Discriminator`.

    Attributes:
        size: input resolution (a power of two >= 8).
        channel_base, channel_max: width at resolution ``r`` is ``min(channel_max, channel_base // r)``
            (16384 / 512: StyleGAN2's channel multiplier 1, as in LIA).
        stddev_group: samples per minibatch-stddev group (reduced to a divisor of the batch).
        stddev_features: channel groups of the stddev feature.
    """

    size: int = 256
    channel_base: int = 16384
    channel_max: int = 512
    stddev_group: int = 4
    stddev_features: int = 1

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"DiscriminatorConfig: size must be a power of two >= 8, got {self.size}")
        for name in ("channel_base", "channel_max", "stddev_group", "stddev_features"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DiscriminatorConfig: {name} must be positive, got {getattr(self, name)}")

    def channels(self, resolution: int) -> int:
        return max(1, min(self.channel_max, self.channel_base // resolution))


def minibatch_stddev(x: Tensor, group: int, features: int = 1) -> Tensor:
    """Append the minibatch standard deviation as extra channels (StyleGAN, Karras et al. 2018, Sec. 3).

    Groups are runs of ``g`` *consecutive* samples, ``g`` the largest divisor of the batch that is
    ``<= group``, so a batch made of two concatenated halves (fakes, reals) whose size ``g`` divides
    never mixes the halves.

    Shapes: ``(B, C, H, W) -> (B, C + features, H, W)``.
    """
    b, c, h, w = x.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    y = x.reshape(b // g, g, features, c // features, h, w).float()
    y = (y.var(dim=1, unbiased=False) + 1e-8).sqrt()          # (B/g, F, C/F, H, W)
    y = y.mean(dim=(2, 3, 4)).to(x.dtype)                      # (B/g, F)
    y = y.repeat_interleave(g, dim=0)[:, :, None, None].expand(b, features, h, w)
    return torch.cat([x, y], dim=1)


class Discriminator(ConfigurableModule):
    """``image (B, 3, S, S) in [-1, 1] -> logit (B,)`` (real: high).

    ``forward(x, features=True)`` also returns the stem and every block's output (fine to coarse),
    for discriminator feature matching.
    """

    kind = "discriminator"
    name = "stylegan2"
    config_class = DiscriminatorConfig

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__(config or DiscriminatorConfig())
        c = self.config
        ch = c.channels
        if ch(4) % c.stddev_features:
            raise ValueError(f"Discriminator: stddev_features={c.stddev_features} must divide the 4x4 width {ch(4)}")
        #: samples per stddev group (the trainer lowers it to a divisor of its per-process batch)
        self.stddev_group = c.stddev_group
        self.stem = ConvLayer(3, ch(c.size), 1)
        blocks, res = [], c.size
        while res > 4:
            blocks.append(ResBlock(ch(res), ch(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        self.final_conv = ConvLayer(ch(4) + c.stddev_features, ch(4), 3)
        self.head = nn.Sequential(EqualLinear(ch(4) * 16, ch(4), activation=True), EqualLinear(ch(4), 1))

    def forward(self, image: Tensor, features: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        size = self.config.size
        if image.ndim != 4 or image.shape[1] != 3 or tuple(image.shape[-2:]) != (size, size):
            check_image(image, "discriminator input", size)  # raises with a clear message
        h = self.stem(image)
        feats = [h]
        for block in self.blocks:
            h = block(h)
            feats.append(h)
        h = self.final_conv(minibatch_stddev(h, self.stddev_group, self.config.stddev_features))
        logit = self.head(h.flatten(1)).squeeze(1)
        return (logit, feats) if features else logit
