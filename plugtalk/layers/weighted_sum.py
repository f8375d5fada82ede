"""Softmax-normalised learnable weighted sum (SUPERB's layer weighting, Yang et al., Interspeech 2021).

FixTalk uses it twice: EMI's "Weighted Sum layer" merging the pooled pyramid levels and the
extractor's output (Sec. 4.1), and EDI's compressor ``Π`` ("average pooling + weighted sum", Sec. 4.2).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SoftmaxWeightedSum"]


class SoftmaxWeightedSum(nn.Module):
    """``y = sum_i softmax(a)_i * x[:, i]`` with one learnable logit ``a_i`` per input.

    The logits start at zero, so the layer starts as the plain mean of its inputs.

    Shapes: ``x (B, num_inputs, ...)`` -> ``(B, ...)``.
    """

    def __init__(self, num_inputs: int):
        super().__init__()
        if num_inputs < 1:
            raise ValueError(f"SoftmaxWeightedSum needs at least one input, got {num_inputs}")
        self.logits = nn.Parameter(torch.zeros(num_inputs))

    def weights(self) -> Tensor:
        """The normalised weights ``(num_inputs,)``: non-negative, summing to 1."""
        return self.logits.softmax(dim=0)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim < 2 or x.shape[1] != self.logits.numel():
            raise ValueError(f"SoftmaxWeightedSum: expected (B, {self.logits.numel()}, ...), got {tuple(x.shape)}")
        w = self.weights().to(x.dtype)
        return (x * w.view(1, -1, *([1] * (x.ndim - 2)))).sum(dim=1)

    def extra_repr(self) -> str:
        return f"num_inputs={self.logits.numel()}"
