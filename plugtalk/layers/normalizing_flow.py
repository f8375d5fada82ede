"""Glow-style flow steps on sequences (Kingma & Dhariwal, NeurIPS 2018), as EDTalk's Audio-to-Pose uses them.

EDTalk suppl. 1.1 ("Normalizing Flow phi_p"): each of K flow steps is an actnorm, an invertible
1x1 convolution and a transformer-based affine coupling conditioned on the audio features.  Every
layer here maps ``x (B, T, D) -> (y (B, T, D), log|det dy/dx| (B,))`` with :meth:`forward` and
back with :meth:`inverse`; the 1x1 convolution over a sequence is a ``D x D`` matrix applied to
every time step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..errors import InputError

__all__ = ["ActNorm", "InvertibleLinear", "ConditionalCoupling", "sinusoidal_positions"]


class ActNorm(nn.Module):
    """``y = (x - loc) / exp(log_scale)`` per channel: EDTalk's ``h' = (beta - mu) / delta``.

    ``loc`` and ``log_scale`` are trainable; :meth:`initialize` sets them to the mean and log
    standard deviation of data (Glow's data-dependent initialisation).  The buffer ``initialized``
    records that, so a saved model keeps its statistics.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def initialize(self, x: Tensor, eps: float = 1e-6) -> None:
        """Set ``loc``/``log_scale`` from ``x (B, T, D)``: afterwards the output has mean 0, std 1."""
        flat = x.reshape(-1, x.shape[-1])
        self.loc.copy_(flat.mean(0))
        self.log_scale.copy_(torch.log(flat.std(0, unbiased=False) + eps))
        self.initialized.fill_(True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y = (x - self.loc) * torch.exp(-self.log_scale)
        return y, (-self.log_scale.sum() * x.shape[1]).expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(self.log_scale) + self.loc


class InvertibleLinear(nn.Module):
    """The invertible 1x1 convolution ``y = W x`` with Glow's LU parametrisation
    ``W = P L (U + diag(sign * exp(log_s)))``: ``log|det W| = sum(log_s)`` per time step.

    ``P`` (a permutation) and ``sign`` are fixed buffers from a random orthogonal start.
    """

    def __init__(self, dim: int):
        super().__init__()
        q = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("permutation", p.float())
        self.register_buffer("sign", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim), -1))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> Tensor:
        """``W (D, D)``."""
        eye = torch.eye(self.lower.shape[0], dtype=self.lower.dtype, device=self.lower.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.t() + torch.diag(self.sign * torch.exp(self.log_s))
        return self.permutation @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x @ self.weight().t(), (self.log_s.sum() * x.shape[1]).expand(x.shape[0])

    def inverse(self, y: Tensor) -> Tensor:
        return y @ torch.linalg.inv(self.weight()).t()


def sinusoidal_positions(length: int, dim: int, *, dtype=torch.float32, device=None) -> Tensor:
    """Transformer sinusoidal position codes ``(length, dim)`` (Vaswani et al. 2017, Sec. 3.5)."""
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64, device=device) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, dtype=torch.float64, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out.to(dtype)


class ConditionalCoupling(nn.Module):
    """EDTalk's transformer coupling: ``t, s = F(h_1, f^a); y_2 = (h_2 + t) * s``, ``y_1 = h_1``.

    ``F`` embeds ``[h_1, f^a]`` per time step, adds sinusoidal positions and runs a transformer
    encoder over time (no dropout, so the map is deterministic in training mode too).
    ``log s = clamp * tanh(raw / clamp)`` bounds the scale; the output layer starts at zero, so
    a fresh coupling is the identity.

    Args:
        dim: channels ``D`` (split ``D // 2`` | ``D - D // 2``).  condition_dim: audio feature width.
        hidden, heads, layers: transformer width, attention heads, encoder layers.
        clamp: bound of ``|log s|``.
    """

    def __init__(self, dim: int, condition_dim: int, hidden: int = 128, heads: int = 4, layers: int = 2,
                 clamp: float = 2.0):
        super().__init__()
        if dim < 2:
            raise ValueError(f"an affine coupling needs at least 2 channels, got {dim}")
        self.split = dim // 2
        self.clamp = float(clamp)
        self.embed = nn.Linear(self.split + condition_dim, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 2 * hidden, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(hidden, 2 * (dim - self.split))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _shift_log_scale(self, h1: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        if condition.shape[:2] != h1.shape[:2]:
            raise InputError(f"coupling: condition {tuple(condition.shape)} does not match the sequence "
                             f"{tuple(h1.shape)} in batch and length")
        e = self.embed(torch.cat([h1, condition], dim=-1))
        e = e + sinusoidal_positions(e.shape[1], e.shape[2], dtype=e.dtype, device=e.device)
        t, raw = self.out(self.transformer(e)).chunk(2, dim=-1)
        return t, self.clamp * torch.tanh(raw / self.clamp)

    def forward(self, x: Tensor, condition: Tensor) -> tuple[Tensor, Tensor]:
        h1, h2 = x[..., : self.split], x[..., self.split:]
        t, log_s = self._shift_log_scale(h1, condition)
        return torch.cat([h1, (h2 + t) * torch.exp(log_s)], dim=-1), log_s.sum(dim=(1, 2))

    def inverse(self, y: Tensor, condition: Tensor) -> Tensor:
        h1, y2 = y[..., : self.split], y[..., self.split:]
        t, log_s = self._shift_log_scale(h1, condition)
        return torch.cat([h1, y2 * torch.exp(-log_s) - t], dim=-1)
