"""Orthogonal motion dictionary (LIA: Wang et al., ICLR 2022, Sec. 3.2, "Linear Motion Decomposition").

A learned ``(D, K)`` matrix is orthonormalised by a reduced QR decomposition; a motion code
``alpha`` (K coefficients) selects the direction ``sum_k alpha_k q_k = alpha @ Q^T`` in latent space.
EDTalk splits the K directions into mouth / pose / expression banks (Tan et al., ECCV 2024).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["orthonormal_basis", "MotionDictionary"]

QR_EPS = 1e-8


def orthonormal_basis(weight: Tensor) -> Tensor:
    """Q of the reduced Householder QR of ``weight + 1e-8``: ``(D, K) -> (D, K)`` with ``Q^T Q = I``.

    The sign of each column is LAPACK's (R's diagonal is not normalised), which trained official
    checkpoints depend on; do not "fix" it.
    """
    if weight.ndim != 2 or weight.shape[0] < weight.shape[1]:
        raise ValueError(f"orthonormal_basis needs a tall (D, K) matrix, got {tuple(weight.shape)}")
    q, _ = torch.linalg.qr(weight + QR_EPS, mode="reduced")
    return q


class MotionDictionary(nn.Module):
    """``alpha (B, K) -> direction (B, D) = alpha @ Q^T``; ``basis()`` returns Q ``(D, K)``."""

    def __init__(self, latent_dim: int, num_directions: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(latent_dim, num_directions))

    def basis(self) -> Tensor:
        return orthonormal_basis(self.weight)

    def forward(self, alpha: Tensor) -> Tensor:
        q = self.basis()
        if alpha.shape[-1] != q.shape[1]:
            raise ValueError(f"MotionDictionary: expected {q.shape[1]} coefficients, got shape {tuple(alpha.shape)}")
        return alpha @ q.t()

    def extra_repr(self) -> str:
        return f"latent_dim={self.weight.shape[0]}, num_directions={self.weight.shape[1]}"
