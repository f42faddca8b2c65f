"""Pre-model prompting (paper §3.3, Eq. 4): visual contexts at the text encoder's input.

A Transformer decoder turns N learnable queries q and the visual context [z̄, z] into N
contexts v_pre = TransDecoder(q, [z̄, z]) per image; they replace the learnable language contexts
p of Eq. 3, so the text encoder runs once per image (no cache at inference). The official code
has no pre-model prompting; the layers are the context decoder's (:class:`ContextDecoderLayer`).
"""

import torch
from torch import nn

from .prompting import ContextDecoder, ContextDecoderLayer

__all__ = ["PreModelPrompting"]


class PreModelPrompting(nn.Module):
    """v_pre = TransDecoder(q, [z̄, z]): B×N×D contexts for the text encoder.

    Args:
        visual_dim: C, the channels of z̄ and z (1024 for RN50).
        context_width: D, the text encoder's token width (512), the width of its contexts.
        num_contexts: N, contexts per prompt (8: text encoder context_length 13 − 5 class tokens).
        width: the decoder's internal width (256; 6 layers of width 256 fit the paper's 116.9 M).
        num_heads, num_layers, dropout: as :class:`~denseclip.prompting.ContextDecoder`.
    """

    def __init__(
        self,
        visual_dim: int,
        context_width: int,
        num_contexts: int = 8,
        width: int = 256,
        num_heads: int = 4,
        num_layers: int = 6,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.queries = nn.Parameter(torch.empty(1, num_contexts, width))
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width), nn.LayerNorm(width)
        )
        self.decoder = nn.ModuleList(
            [ContextDecoderLayer(width, num_heads, dropout) for _ in range(num_layers)]
        )
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, context_width))
        self.apply(ContextDecoder._init_weights)
        nn.init.trunc_normal_(self.queries, std=0.02)

    @property
    def num_contexts(self) -> int:
        """N."""
        return self.queries.shape[1]

    @property
    def context_width(self) -> int:
        """D."""
        return self.out_proj[-1].out_features

    def forward(self, visual_context: torch.Tensor) -> torch.Tensor:
        """visual_context: B×(1+hw)×C, [z̄, z] → B×N×D contexts."""
        memory = self.memory_proj(visual_context)
        x = self.queries.expand(visual_context.shape[0], -1, -1)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)
