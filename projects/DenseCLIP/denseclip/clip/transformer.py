"""The CLIP transformer (shared by the ViT image encoder and the text encoder).

Tensors run sequence-first (L×N×D), as in OpenAI CLIP, and submodule names are the checkpoint's:
``resblocks.<i>.{attn,ln_1,mlp.c_fc,mlp.c_proj,ln_2}``.
"""

from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import StochasticDepth

from .checkpointing import recomputes_activations, run_segment

#: (keys, values) of one block, each …×H×L×d (heads H, head width d).
KeysValues = Tuple[torch.Tensor, torch.Tensor]


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in at least float32 whatever the input dtype (CLIP's fp16 weights;
    float64 stays float64)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)
        weight = None if self.weight is None else self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        out = F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)
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

    def forward_causal(
        self, x: torch.Tensor, past: Optional[KeysValues] = None
    ) -> Tuple[torch.Tensor, KeysValues]:
        """The block under a causal mask, on segments that continue earlier positions.

        Each position attends to the ``past`` positions and to the positions of its own segment
        up to itself: with ``past`` the keys and values of positions 0..P-1 at this block, the
        output is that of :meth:`forward` (causal ``attn_mask``) at positions P..P+S-1 of the
        whole sequences, up to float rounding. Batch-first, any leading batch dimensions ``…``;
        stochastic depth is not applied (the text encoder has none).

        Args:
            x: …×S×D tokens of the segments.
            past: (keys, values), …×H×P×d each (expanded views are fine), or None (P = 0).
        Returns:
            (…×S×D outputs, (keys, values) of the segments, …×H×S×d each).
        """
        if self.training and not isinstance(self.drop_path, nn.Identity):
            raise RuntimeError("forward_causal does not apply stochastic depth")
        attn = self.attn
        qkv = F.linear(self.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = (
            t.unflatten(-1, (attn.num_heads, -1)).transpose(-3, -2) for t in qkv.chunk(3, -1)
        )
        length = x.shape[-2]
        mask = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        keys, values = k, v
        if past is not None:
            mask = F.pad(mask, (past[0].shape[-2], 0), value=True)
            keys, values = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        x = x + attn.out_proj(out.transpose(-3, -2).flatten(-2))
        return x + self.mlp(self.ln_2(x)), (k, v)


class Transformer(nn.Module):
    """A stack of ``layers`` residual attention blocks (``resblocks``).

    Args:
        width: token width D.
        layers: number of blocks.
        heads: attention heads per block.
        attn_mask: optional additive mask shared by all blocks (see ResidualAttentionBlock).
        drop_path_rate: stochastic depth of the last block; rates grow linearly from 0.
        use_act_checkpoint: in training with gradients on, recompute each block's activations
            in the backward pass instead of keeping them (less memory, one more forward).
    """

    def __init__(
        self,
        width: int,
        layers: int,
        heads: int,
        attn_mask: Optional[torch.Tensor] = None,
        drop_path_rate: float = 0.0,
        use_act_checkpoint: bool = False,
    ):
        super().__init__()
        self.width = width
        self.layers = layers
        self.use_act_checkpoint = use_act_checkpoint
        rates = torch.linspace(0, drop_path_rate, layers).tolist()
        self.resblocks = nn.Sequential(
            *[ResidualAttentionBlock(width, heads, attn_mask, rate) for rate in rates]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: L×N×D → L×N×D."""
        recompute = recomputes_activations(self, self.use_act_checkpoint)
        for block in self.resblocks:
            x = run_segment(block, x, recompute=recompute)
        return x

    def forward_with_shared_prefix(
        self, prefix: torch.Tensor, suffixes: Sequence[torch.Tensor]
    ) -> List[torch.Tensor]:
        """Causal sequences [prefix b, suffix (b, g)] that share their prefix, which runs once.

        Under a causal mask the prefix positions never see the suffix, so they are the same in
        every sequence of prefix b: each block runs the B prefixes, then each group of suffixes
        (one length per group) attending to the prefix's keys and values
        (:meth:`ResidualAttentionBlock.forward_causal`). Equals :meth:`forward` with a causal
        mask on the concatenated sequences, at the suffix positions, up to float rounding:
        B·(P + Σ G_i·S_i) token positions instead of B·Σ G_i·(P + S_i).

        Args:
            prefix: B×P×D tokens (batch-first).
            suffixes: groups of suffixes, B×G_i×S_i×D each.
        Returns:
            the B×G_i×S_i×D outputs of each group's suffix positions.
        """
        suffixes = list(suffixes)
        recompute = recomputes_activations(self, self.use_act_checkpoint)
        for block in self.resblocks:
            causal = dict(recompute=recompute, function=block.forward_causal)
            prefix, (keys, values) = run_segment(block, prefix, **causal)
            for i, group in enumerate(suffixes):
                past = tuple(
                    t[:, None].expand(-1, group.shape[1], -1, -1, -1) for t in (keys, values)
                )
                suffixes[i], _ = run_segment(block, group, past, **causal)
        return suffixes
