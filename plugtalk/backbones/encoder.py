"""The LIA-family image encoder: a StyleGAN2-discriminator-like stack that returns a latent and a
feature pyramid (LIA, Wang et al. ICLR 2022, Sec. 3.1; reused by DPE and EDTalk)."""

from __future__ import annotations

from torch import Tensor, nn

from ..layers import ConvLayer, EqualConv2d, ResBlock
from .base import BackboneConfig, Encoding

__all__ = ["PyramidEncoder"]


class PyramidEncoder(nn.Module):
    """``image (B, 3, S, S) -> Encoding(latent (B, style_dim), pyramid)``.

    A 1x1 stem at full resolution, one residual down-sampling block per octave down to 4x4, and a
    4x4 "valid" conv to the 1x1 latent.  The pyramid holds the stem output and every block output
    down to 8x8, ordered coarse to fine (``pyramid[i]`` has resolution ``8 * 2**i``), which is the
    order the synthesis network consumes them in.  The 4x4 map is not part of the pyramid.
    """

    def __init__(self, config: BackboneConfig):
        super().__init__()
        c = config.channels
        self.stem = ConvLayer(3, c(config.size), 1)
        blocks = []
        res = config.size
        while res > 4:
            blocks.append(ResBlock(c(res), c(res // 2)))
            res //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_latent = EqualConv2d(c(4), config.style_dim, 4, bias=False)

    def forward(self, image: Tensor) -> Encoding:
        h = self.stem(image)
        maps = [h]
        for block in self.blocks:
            h = block(h)
            maps.append(h)
        latent = self.to_latent(h).flatten(1)
        # maps: full res ... 4x4; drop the 4x4 map and reverse to coarse -> fine.
        return Encoding(latent, tuple(reversed(maps[:-1])))
