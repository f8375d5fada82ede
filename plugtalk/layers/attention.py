"""Pre-LayerNorm residual cross-attention block (the transformer decoder layer without self-attention).

Used by EMI's extractor ``P`` (FixTalk Sec. 4.1: "N stacked layers of cross-attention and FFN", queried
by learnable vectors as in BLIP-2's Q-Former) and by EDI's fusion (FixTalk Sec. 4.2, the multi-head
cross-attention of RestoreFormer, Wang et al., CVPR 2022).  Attention is ``torch.nn.MultiheadAttention``
(scaled-dot-product attention kernels), the FFN is ``timm.layers.Mlp``.
"""

from __future__ import annotations

from timm.layers import Mlp
from torch import Tensor, nn

__all__ = ["CrossAttentionBlock"]


class CrossAttentionBlock(nn.Module):
    """``x = x + MHA(LN(x), LN(ctx), LN(ctx))``, then (if ``mlp_ratio > 0``) ``x = x + FFN(LN(x))``.

    Args:
        dim: width of the query tokens ``x`` (and of the output).
        num_heads: attention heads; must divide ``dim``.
        context_dim: width of the key/value tokens (default ``dim``).
        mlp_ratio: FFN hidden width as a multiple of ``dim``; ``0`` leaves the FFN out.
        dropout: dropout on attention weights and in the FFN.

    Shapes: ``x (B, Nq, dim)``, ``context (B, Nk, context_dim)`` -> ``(B, Nq, dim)``.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None, mlp_ratio: float = 4.0,
                 dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"CrossAttentionBlock: num_heads ({num_heads}) must divide dim ({dim})")
        context_dim = dim if context_dim is None else context_dim
        self.norm_query = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, kdim=context_dim, vdim=context_dim,
                                          batch_first=True)
        if mlp_ratio > 0:
            self.norm_mlp = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, hidden_features=max(1, int(round(dim * mlp_ratio))), drop=dropout)
        else:
            self.norm_mlp = self.mlp = None

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        ctx = self.norm_context(context)
        x = x + self.attn(self.norm_query(x), ctx, ctx, need_weights=False)[0]
        if self.mlp is not None:
            x = x + self.mlp(self.norm_mlp(x))
        return x
