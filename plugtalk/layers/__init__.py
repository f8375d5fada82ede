"""Shared layers of the LIA family, written once (like ``timm.layers``).

Equalised-lr linear/conv, FIR resampling, biased leaky ReLU, modulated conv, flow prediction and
warping, RGB head, residual down-sampling block and the QR motion dictionary; the cross-attention
block and softmax weighted sum that FixTalk's EMI and EDI are built from.
"""

from .activation import BiasedLeakyReLU, biased_leaky_relu
from .attention import CrossAttentionBlock
from .conv import ConvLayer, ResBlock
from .dictionary import MotionDictionary, orthonormal_basis
from .equalized import EqualConv2d, EqualLinear, linear_stack
from .fir import Blur, Upsample2x, fir_kernel, upfirdn2d
from .flow import FlowHead, FlowStep, base_grid, warp
from .modulated import ModulatedConv2d, StyledConv
from .normalizing_flow import ActNorm, ConditionalCoupling, InvertibleLinear
from .rgb import RGBHead
from .temporal import StreamingSmoother, gaussian_smooth, gaussian_taps
from .weighted_sum import SoftmaxWeightedSum

__all__ = [
    "BiasedLeakyReLU", "biased_leaky_relu", "ConvLayer", "ResBlock", "MotionDictionary", "orthonormal_basis",
    "EqualConv2d", "EqualLinear", "linear_stack", "Blur", "Upsample2x", "fir_kernel", "upfirdn2d", "FlowHead", "FlowStep",
    "base_grid", "warp", "ModulatedConv2d", "StyledConv", "RGBHead", "gaussian_smooth", "gaussian_taps",
    "StreamingSmoother", "ActNorm", "InvertibleLinear", "ConditionalCoupling",
    "CrossAttentionBlock", "SoftmaxWeightedSum",
]
