"""Context-aware prompting (paper §3.3): learnable language contexts and the context decoder.

Module and parameter names follow the official implementation (``contexts``, ``gamma``,
``context_decoder.memory_proj`` ...), so official checkpoints map onto them by prefix.
"""

from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather
from torch.nn import functional as F

from .clip import CLIPTextEncoder, tokenize_class_names

__all__ = [
    "ContextAttention",
    "ContextDecoderLayer",
    "ContextDecoder",
    "ClassTextPrompts",
    "score_maps",
]


class ContextAttention(nn.Module):
    """Multi-head attention with bias-free q/k/v projections (official ``Attention``).

    Written with explicit einsums so that fvcore counts its matmuls.
    """

    def __init__(self, dim: int, num_heads: int, proj_dropout: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """query: B×N×C, memory: B×M×C → B×N×C."""
        B, N, C = query.shape
        M = memory.shape[1]
        heads = self.num_heads
        q = self.q_proj(query).reshape(B, N, heads, C // heads)
        k = self.k_proj(memory).reshape(B, M, heads, C // heads)
        v = self.v_proj(memory).reshape(B, M, heads, C // heads)
        attn = (torch.einsum("bnhc,bmhc->bhnm", q, k) * self.scale).softmax(dim=-1)
        x = torch.einsum("bhnm,bmhc->bnhc", attn, v).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class ContextDecoderLayer(nn.Module):
    """Pre-norm Transformer decoder layer: self-attention, cross-attention, 4× GELU MLP."""

    def __init__(self, width: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = ContextAttention(width, num_heads, dropout)
        self.cross_attn = ContextAttention(width, num_heads, dropout)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.norm3 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, width * 4),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width * 4, width),
        )

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, keys: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x: B×K×W text queries, memory: B×(1+HW)×W visual context (already normalised).

        keys: optional B×K'×W text states that the queries self-attend to instead of each other
        (see :meth:`ContextDecoder.forward_queries`); default x itself.
        """
        normed = self.norm1(x)
        x = x + self.self_attn(normed, normed if keys is None else self.norm1(keys))
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.dropout(self.mlp(self.norm3(x)))


class ContextDecoder(nn.Module):
    """Post-model prompting (Eq. 5): text embeddings attend to the visual context [z̄, z].

    Args:
        visual_dim: C, the width of CLIP's joint embedding space (1024 for RN50, 512 otherwise).
        width: the decoder's internal width (256 in the paper).
        num_heads: attention heads (4).
        num_layers: decoder layers (3 in the official configs; the paper ablates up to 6).
        dropout: dropout after attention projections and in the MLP (0.1).
    """

    def __init__(
        self,
        visual_dim: int,
        width: int = 256,
        num_heads: int = 4,
        num_layers: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.memory_proj = nn.Sequential(
            nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width), nn.LayerNorm(width)
        )
        self.text_proj = nn.Sequential(nn.LayerNorm(visual_dim), nn.Linear(visual_dim, width))
        self.decoder = nn.ModuleList(
            [ContextDecoderLayer(width, num_heads, dropout) for _ in range(num_layers)]
        )
        self.out_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, visual_dim))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, text: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """text: B×K×C class embeddings, visual: B×(1+HW)×C context → B×K×C update Δt."""
        memory = self.memory_proj(visual)
        x = self.text_proj(text)
        for layer in self.decoder:
            x = layer(x, memory)
        return self.out_proj(x)

    def forward_queries(
        self, text: torch.Tensor, queries: torch.Tensor, visual: torch.Tensor
    ) -> torch.Tensor:
        """Updates Δq of extra text queries (free-text prompts) decoded beside the K classes.

        At every layer each query self-attends to the K class states of that layer, never to
        itself or to the other queries, and the classes do not see the queries. So a query's
        update does not depend on the other queries, and a query equal to class k's embedding
        gets exactly class k's update Δt_k from :meth:`forward`.

        Args:
            text: B×K×C class embeddings, queries: B×T×C, visual: B×(1+HW)×C context.
        Returns:
            B×T×C.
        """
        memory = self.memory_proj(visual)
        states, x = self.text_proj(text), self.text_proj(queries)
        for layer in self.decoder:
            x = layer(x, memory, keys=states)
            states = layer(states, memory)
        return self.out_proj(x)


class ClassTextPrompts(nn.Module):
    """Language-domain prompting (CoOp): ``[SOT, ctx_1..ctx_N, class name, EOT]`` → text embeddings.

    Holds the frozen CLIP text encoder, the tokenized class names (a non-persistent buffer: the
    names come from the config or the dataset, not the checkpoint) and the N learnable contexts.
    In eval mode the K×C output depends only on parameters; it is cached and recomputed whenever
    a parameter it depends on changes in place (optimizer step, ``load_state_dict``), is
    replaced or moved (``.to(device/dtype)``), the inference-mode state differs from the one it
    was computed in, or the module switches mode, so it is never stale. (Writes through
    ``param.data`` bypass autograd's version counters and are not seen: change parameters under
    ``torch.no_grad()`` instead.) The cache and :meth:`encode` are computed with autocast off,
    in the parameters' dtype: once per weights, full precision costs nothing at inference, and
    mixed-precision predictions agree better with float32 ones. Training runs the text encoder
    under the caller's autocast. The cache is read and written as one attribute, so that
    concurrent callers never pair one state's key with another's embeddings. For inference
    without the text encoder, :mod:`denseclip.checkpoint.deploy` replaces this module by its
    fixed output.

    Args:
        text_encoder: CLIP text encoder whose ``context_length`` = class_token_length + N.
        class_names: the K class prompts.
        class_token_length: tokens per class name including SOT/EOT (5 in the official code).
        freeze_text_encoder: the official recipe trains the contexts only.
        shard_text_across_ranks: in data-parallel training (``torch.distributed`` initialised,
            R > 1 ranks) each rank encodes only its ⌈K/R⌉ classes (:meth:`sharded_embeddings`)
            and the ranks' slices are gathered with autograd. The contexts' gradient stays that
            of the unsharded step: rank r's loss L_r depends on every rank s's slice t_s;
            all_gather's backward hands rank s the gradient of its slice summed over the ranks,
            Σ_r ∂L_r/∂t_s, so rank s's contexts get Σ_r ∂L_r/∂t_s · ∂t_s/∂ctx, and DDP's mean
            over s gives (1/R) Σ_r Σ_s ∂L_r/∂t_s · ∂t_s/∂ctx = (1/R) Σ_r ∂L_r/∂ctx, the mean
            of the unsharded ranks' gradients. No effect outside training or on one rank. On by
            default: one rank's step at R = 8 measures 3 % faster (``tools/benchmark.py
            --simulate-ranks 8``, RN50 512², K = 150).
    """

    def __init__(
        self,
        text_encoder: CLIPTextEncoder,
        class_names: Sequence[str],
        class_token_length: int = 5,
        freeze_text_encoder: bool = True,
        shard_text_across_ranks: bool = True,
    ):
        super().__init__()
        num_contexts = text_encoder.context_length - class_token_length
        if num_contexts < 0:
            raise ValueError(
                f"text encoder context_length={text_encoder.context_length} is shorter than "
                f"class_token_length={class_token_length}"
            )
        self.text_encoder = text_encoder
        if freeze_text_encoder:
            self.text_encoder.requires_grad_(False)
        self.class_names = list(class_names)
        self.register_buffer(
            "class_tokens", tokenize_class_names(self.class_names, class_token_length), False
        )
        width = text_encoder.token_embedding.embedding_dim
        self.contexts = nn.Parameter(torch.empty(1, num_contexts, width))
        nn.init.trunc_normal_(self.contexts)
        self.shard_text_across_ranks = shard_text_across_ranks
        self._cached: Optional[Tuple[tuple, torch.Tensor]] = None  # (state key, embeddings)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _state_key(self) -> tuple:
        params = (self.contexts, *self.text_encoder.parameters())
        mode = (torch.is_inference_mode_enabled(),)
        return mode + tuple((id(p), p._version, p.data_ptr(), p.device, p.dtype) for p in params)

    def _without_autocast(self):
        """Autocast off: text embeddings in the parameters' dtype whatever the caller's."""
        return torch.autocast(self.contexts.device.type, enabled=False)

    def forward(self) -> torch.Tensor:
        """→ 1×K×C text embeddings of the class prompts."""
        if self.training:
            self._cached = None
            world_size = _data_parallel_world_size()
            if self.shard_text_across_ranks and world_size > 1:
                return self.sharded_embeddings(dist.get_rank(), world_size, all_gather)
            return self.text_encoder(self.class_tokens, self.contexts)
        key, cached = self._state_key(), self._cached
        if cached is None or cached[0] != key:
            with torch.no_grad(), self._without_autocast():
                cached = (key, self.text_encoder(self.class_tokens, self.contexts))
            self._cached = cached
        return cached[1]

    def sharded_embeddings(
        self,
        rank: int,
        world_size: int,
        gather: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    ) -> torch.Tensor:
        """The class text embeddings computed a slice per rank.

        Rank r encodes classes r·S .. (r+1)·S - 1, S = ⌈K/R⌉ (indices past K - 1 repeat the
        last class, so that every slice has S rows; those rows are dropped after the gather).

        Args:
            rank, world_size: r and R.
            gather: 1×S×C slice of this rank → the R ranks' slices in rank order.
        Returns:
            1×K×C, equal to :meth:`forward`'s unsharded output.
        """
        per_rank = -(-self.num_classes // world_size)
        first = rank * per_rank
        indices = torch.arange(first, first + per_rank, device=self.class_tokens.device)
        tokens = self.class_tokens[indices.clamp(max=self.num_classes - 1)]
        shard = self.text_encoder(tokens, self.contexts)
        return torch.cat(list(gather(shard)), dim=1)[:, : self.num_classes]

    def train(self, mode: bool = True):
        if mode != self.training:
            self._cached = None
        return super().train(mode)

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of any prompts, built like the class prompts (the learned contexts, then
        each text in the class-name slot of ≤ class_token_length - 2 BPE tokens).

        Args:
            texts: T prompts.
        Returns:
            1×T×C; ``encode(class_names)`` equals :meth:`forward`'s output.
        """
        length = self.class_tokens.shape[1]
        tokens = tokenize_class_names(texts, length).to(self.class_tokens.device)
        with self._without_autocast():
            return self.text_encoder(tokens, self.contexts)


def _data_parallel_world_size() -> int:
    """R, the number of ranks of the default process group (1 without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def score_maps(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Pixel-text cosine similarities (Eq. 6).

    Args:
        dense: B×C×H×W dense visual embeddings z.
        text: B×K×C (or 1×K×C) text embeddings t.
    Returns:
        B×K×H×W scores in [-1, 1].
    """
    dense = F.normalize(dense, dim=1)
    text = F.normalize(text, dim=2)
    if text.shape[0] == 1:
        return torch.einsum("bchw,kc->bkhw", dense, text[0])
    return torch.einsum("bchw,bkc->bkhw", dense, text)
