"""Official-key tables for the parts the LIA family shares (encoder, synthesis, linear stacks).

Each backbone composes its :class:`~plugtalk.backbones.official.OfficialKeyMap` from these.
"""

from __future__ import annotations

from ..layers import fir_kernel
from .base import BackboneConfig
from .official import OfficialKeyMap

__all__ = ["encoder_keys", "synthesis_keys", "linear_stack_keys", "styled_conv_keys"]

_UNUSED_NOISE = "noise-injection weight: the official decoders never pass noise, so it has no effect"
_UNUSED_RGB1 = "4x4 RGB head: computed by no official forward pass"


def encoder_keys(config: BackboneConfig, official: str, ours: str) -> OfficialKeyMap:
    """Official ``EncoderApp`` (``convs.0`` stem, ``convs.1..n`` ResBlocks, ``convs.n+1`` 4x4 conv)."""
    m = OfficialKeyMap()
    down = fir_kernel()
    m.rename[f"{official}convs.0.0.weight"] = f"{ours}stem.conv.weight"
    m.rename[f"{official}convs.0.1.bias"] = f"{ours}stem.act.bias"
    n_blocks = len(config.pyramid_resolutions)  # one per octave, size -> 4x4
    for j in range(n_blocks):
        o, p = f"{official}convs.{j + 1}.", f"{ours}blocks.{j}."
        m.rename[o + "conv1.0.weight"] = p + "conv1.conv.weight"
        m.rename[o + "conv1.1.bias"] = p + "conv1.act.bias"
        m.buffers[o + "conv2.0.kernel"] = down
        m.rename[o + "conv2.1.weight"] = p + "conv2.conv.weight"
        m.rename[o + "conv2.2.bias"] = p + "conv2.act.bias"
        m.buffers[o + "skip.0.kernel"] = down
        m.rename[o + "skip.1.weight"] = p + "skip.conv.weight"
    m.rename[f"{official}convs.{n_blocks + 1}.weight"] = f"{ours}to_latent.weight"
    return m


def styled_conv_keys(m: OfficialKeyMap, o: str, p: str, upsample: bool) -> None:
    """Map one official StyleGAN2 styled convolution (prefix ``o``) onto plugtalk's (prefix ``p``): weight,
    modulation and activation bias (LIA's and GoHD's generators share this block)."""
    m.rename[o + "conv.weight"] = p + "conv.weight"
    m.rename[o + "conv.modulation.weight"] = p + "conv.modulation.weight"
    m.rename[o + "conv.modulation.bias"] = p + "conv.modulation.bias"
    m.rename[o + "activate.bias"] = p + "act.bias"
    m.drop[o + "noise.weight"] = _UNUSED_NOISE
    if upsample:
        m.buffers[o + "conv.blur.kernel"] = fir_kernel(gain=4)


def synthesis_keys(config: BackboneConfig, official: str, ours: str, expression: bool = False) -> OfficialKeyMap:
    """Official ``Synthesis`` (``input``, ``conv1``, ``to_rgb1``, ``convs``, ``to_rgbs``, ``to_flows``
    and, for EDTalk, ``fineadainresblock``)."""
    m = OfficialKeyMap()
    up = fir_kernel(gain=4)
    m.rename[f"{official}input.input"] = f"{ours}const"
    styled_conv_keys(m, f"{official}conv1.", f"{ours}conv_in.", upsample=False)
    for k in ("bias", "conv.0.weight", "conv.1.bias"):
        m.drop[f"{official}to_rgb1.{k}"] = _UNUSED_RGB1
    for i, _ in enumerate(config.pyramid_resolutions):
        p = f"{ours}levels.{i}."
        styled_conv_keys(m, f"{official}convs.{2 * i}.", p + "up.", upsample=True)
        styled_conv_keys(m, f"{official}convs.{2 * i + 1}.", p + "conv.", upsample=False)
        o = f"{official}to_rgbs.{i}."
        m.rename[o + "conv.0.weight"] = p + "rgb.conv.weight"
        m.rename[o + "conv.1.bias"] = p + "rgb.act.bias"
        m.rename[o + "bias"] = p + "rgb.bias"
        m.buffers[o + "upsample.kernel"] = up
        o = f"{official}to_flows.{i}."
        m.rename[o + "conv.weight"] = p + "flow.conv.weight"
        m.rename[o + "conv.modulation.weight"] = p + "flow.conv.modulation.weight"
        m.rename[o + "conv.modulation.bias"] = p + "flow.conv.modulation.bias"
        m.rename[o + "bias"] = p + "flow.bias"
        m.buffers[o + "upsample.kernel"] = up
        if expression:
            o = f"{official}fineadainresblock.{i}."
            m.rename[o + "conv2.weight"] = p + "expression.conv.weight"
            m.rename[o + "conv2.bias"] = p + "expression.conv.bias"
            for off, our in (("mlp_shared.0", "hidden"), ("mlp_gamma", "gamma"), ("mlp_beta", "beta")):
                m.rename[f"{o}norm2.{off}.weight"] = f"{p}expression.norm.{our}.weight"
                m.rename[f"{o}norm2.{off}.bias"] = f"{p}expression.norm.{our}.bias"
                for t in ("weight", "bias"):
                    m.drop[f"{o}norm1.{off}.{t}"] = "first expression branch: computed, then overwritten officially"
            for t in ("weight", "bias"):
                m.drop[f"{o}conv1.{t}"] = "first expression branch: computed, then overwritten officially"
    return m


def linear_stack_keys(official: str, ours: str, n: int) -> OfficialKeyMap:
    """An ``nn.Sequential`` of ``n`` EqualLinear layers (same indices on both sides)."""
    m = OfficialKeyMap()
    for i in range(n):
        m.rename[f"{official}{i}.weight"] = f"{ours}{i}.weight"
        m.rename[f"{official}{i}.bias"] = f"{ours}{i}.bias"
    return m
