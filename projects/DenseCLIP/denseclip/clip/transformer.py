"""The CLIP transformer (shared by the ViT image encoder and the text encoder).

Tensors run sequence-first (L×N×D), as in OpenAI CLIP, and submodule names are the checkpoint's:
``resblocks.<i>.{attn,ln_1,mlp.c_fc,mlp.c_proj,ln_2}``.
"""

from collections import OrderedDict
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import StochasticDepth


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (CLIP's fp16 weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x·σ(1.702x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def _traceable_attention(
    attn: nn.MultiheadAttention, x: torch.Tensor, mask: Optional[torch.Tensor]
) -> torch.Tensor:
    """``attn(x, x, x, attn_mask=mask)[0]`` (no dropout) written out with einsums, for export:
    traced, ``nn.MultiheadAttention`` records its sequence length and batch size as constants.
    The same computation up to float rounding.

    x: L×N×D, mask: additive L×L or None → L×N×D.
    """
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.unflatten(-1, (3, attn.num_heads, attn.head_dim)).unbind(2)  # L×N×H×d each
    weights = torch.einsum("lnhd,mnhd->nhlm", q * attn.head_dim**-0.5, k)
    if mask is not None:
        weights = weights + mask
    out = torch.einsum("nhlm,mnhd->lnhd", weights.softmax(dim=-1), v).flatten(2)
    return attn.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).

    Args:
        d_model: token width D.
        n_head: attention heads.
        attn_mask: optional additive L_max×L_max mask (kept as a non-persistent buffer). A shorter
            sequence of length L uses its top-left L×L block, which for a causal mask is the
            causal mask of length L.
        drop_path: stochastic-depth probability of both residual branches. As in the official
            DenseCLIP code, the drop mask is drawn along dim 0 of the L×N×D tensor, that is per
            token position (shared by the batch), not per sample.
    """

    #: Compute attention with :func:`_traceable_attention` (set on the copy that
    #: :func:`denseclip.export.graph_model` traces).
    traceable_attention = False

    def __init__(
        self,
        d_model: int,
        n_head: int,
        attn_mask: Optional[torch.Tensor] = None,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_head)
        self.ln_1 = LayerNorm(d_model)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(d_model, d_model * 4)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(d_model * 4, d_model)),
                ]
            )
        )
        self.ln_2 = LayerNorm(d_model)
        self.register_buffer("attn_mask", attn_mask, persistent=False)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """x: L×N×D → L×N×D self-attention output."""
        mask = self.attn_mask
        if mask is not None:
            length = x.shape[0]
            mask = mask[:length, :length].to(x.dtype)
        if self.traceable_attention:
            return _traceable_attention(self.attn, x, mask)
        return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: L×N×D → L×N×D."""
        x = x + self.drop_path(self.attention(self.ln_1(x)))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """A stack of ``layers`` residual attention blocks (``resblocks``).

    Args:
        width: token width D.
        layers: number of blocks.
        heads: attention heads per block.
        attn_mask: optional additive mask shared by all blocks (see ResidualAttentionBlock).
        drop_path_rate: stochastic depth of the last block; rates grow linearly from 0.
    """

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        attn_mask: Optional[torch.Tensor] = None,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        self.width = width
        self.layers = layers
        rates = torch.linspace(0, drop_path_rate, layers).tolist()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask, rate) for rate in rates]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: L×N×D → L×N×D."""
        return self.resblocks(x)
