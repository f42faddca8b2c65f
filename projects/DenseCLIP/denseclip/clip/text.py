"""CLIP's text encoder, with DenseCLIP's learnable contexts, and class-name tokenization.

Parameter names are the text keys of an OpenAI CLIP checkpoint (``token_embedding.weight``,
``positional_embedding``, ``transformer.resblocks.*``, ``ln_final.*``, ``text_projection``).
"""

from functools import lru_cache
from typing import Sequence

import torch
from torch import nn

from .transformer import LayerNorm, Transformer


class CLIPTextEncoder(nn.Module):
    """CLIP text transformer (causal mask; the feature is read at the EOT token).

    With contexts every prompt is [SOT, ctx_1..ctx_N, class tokens, EOT, padding]. Under the
    causal mask the first 1+N positions are the same for all K classes and never see the class
    tokens, so with ``shared_prefix`` they run once (per context set) and each class runs only
    its class tokens up to its own EOT, attending to the prefix's keys and values
    (:meth:`Transformer.forward_with_shared_prefix`): 1+N + Σ_k (EOT index of k) token positions
    instead of K·(N+L) (343 instead of 1950 for the 150 ADE20K classes), the same features up to
    float rounding.

    Args:
        context_length: sequence length, class tokens + contexts (13 = 5 + 8 in DenseCLIP); the
            positional embedding has this many rows (an OpenAI checkpoint's 77 are truncated).
        vocab_size: BPE vocabulary size.
        width: token width D.
        heads, layers: transformer heads and depth.
        embed_dim: output channels C of ``text_projection``.
        shared_prefix: encode prompts with contexts by running their shared prefix once (False:
            every prompt as a whole sequence, the reference computation).
        use_act_checkpoint: in training with gradients on, recompute each block's activations
            in the backward pass instead of keeping them (less memory, one more forward).
    """

    def __init__(
        self,
        context_length: int = 13,
        vocab_size: int = 49408,
        width: int = 512,
        heads: int = 8,
        layers: int = 12,
        embed_dim: int = 1024,
        shared_prefix: bool = True,
        use_act_checkpoint: bool = False,
    ):
        super().__init__()
        self.context_length = context_length
        self.embed_dim = embed_dim
        self.shared_prefix = shared_prefix
        causal_mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.transformer = Transformer(
            width, layers, heads, attn_mask=causal_mask, use_act_checkpoint=use_act_checkpoint
        )
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self._initialize_parameters()

    def _initialize_parameters(self):
        """OpenAI CLIP's ``initialize_parameters`` for the text side."""
        width, layers = self.transformer.width, self.transformer.layers
        attn_std = width**-0.5
        proj_std = attn_std * (2 * layers) ** -0.5
        fc_std = (2 * width) ** -0.5
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def _encode(self, x: torch.Tensor, eot_index: torch.Tensor) -> torch.Tensor:
        """x: S×L×D token embeddings, eot_index: S → S×C features at the EOT positions.

        Thanks to the causal mask, positions after the last EOT cannot influence any EOT
        feature, so they are dropped before the transformer.
        """
        x = x + self.positional_embedding[: x.shape[1]].to(x.dtype)
        x = x[:, : int(eot_index.max()) + 1]
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self._project(x[torch.arange(x.shape[0], device=x.device), eot_index])

    def _project(self, eot_features: torch.Tensor) -> torch.Tensor:
        """…×D transformer outputs at EOT → …×C embeddings."""
        return self.ln_final(eot_features) @ self.text_projection

    def _encode_with_shared_prefix(
        self, tokens: torch.Tensor, contexts: torch.Tensor
    ) -> torch.Tensor:
        """tokens: K×L (one first token for all), contexts: B×N×D → B×K×C, as :meth:`forward`.

        The prefix [first token, contexts] (1+N positions) runs once per context set; each
        class's suffix is its class tokens after the first one, up to its own EOT. Suffixes of
        one length run as one group, the EOT last in each.
        """
        if (tokens[:, 0] != tokens[0, 0]).any():
            raise ValueError("shared-prefix encoding needs prompts that all start with one token")
        batch, num_contexts, width = contexts.shape
        positions = self.positional_embedding.to(contexts.dtype)
        prefix_length = 1 + num_contexts
        first = self.token_embedding(tokens[0, :1]).to(contexts.dtype)  # 1×D
        prefix = torch.cat([first.expand(batch, 1, width), contexts], dim=1)
        prefix = prefix + positions[:prefix_length]
        suffix_lengths = tokens.argmax(dim=-1)  # up to and including the EOT
        groups, suffixes = [], []
        for length in suffix_lengths.unique().tolist():
            classes = (suffix_lengths == length).nonzero().squeeze(1)
            embedded = self.token_embedding(tokens[classes, 1 : 1 + length]).to(contexts.dtype)
            embedded = embedded + positions[prefix_length : prefix_length + length]
            groups.append(classes)
            suffixes.append(embedded.expand(batch, -1, -1, -1))  # B×G×S×D
        outputs = self.transformer.forward_with_shared_prefix(prefix, suffixes)
        eot_features = torch.cat([x[:, :, -1] for x in outputs], dim=1)  # B×K×D, grouped
        return self._project(eot_features[:, torch.cat(groups).argsort()])

    def forward(self, tokens: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Class embeddings with learnable contexts inserted after the SOT token.

        Args:
            tokens: K×L class tokens (SOT, BPE, EOT, zero padding; see tokenize_class_names).
            contexts: B×N×D context embeddings, L + N = context_length. B = 1 (contexts shared
                by all images) runs the K sequences once.
        Returns:
            B×K×C: the features at position argmax(tokens) + N (the EOT token).
        Raises:
            ValueError: when L + N is not context_length; with ``shared_prefix``, when the
                prompts do not all start with the same token (tokenized names start with SOT).
        """
        num_classes, num_tokens = tokens.shape
        batch, num_contexts, _ = contexts.shape
        if num_tokens + num_contexts != self.context_length:
            raise ValueError(
                f"{num_tokens} class tokens + {num_contexts} contexts = "
                f"{num_tokens + num_contexts}, but the text encoder's context_length is "
                f"{self.context_length}"
            )
        if self.shared_prefix:
            return self._encode_with_shared_prefix(tokens, contexts)
        embedded = self.token_embedding(tokens).to(contexts.dtype)  # K×L×D
        embedded = embedded.expand(batch, -1, -1, -1)
        contexts = contexts[:, None].expand(-1, num_classes, -1, -1)  # B×K×N×D
        x = torch.cat([embedded[:, :, :1], contexts, embedded[:, :, 1:]], dim=2)
        eot_index = (tokens.argmax(dim=-1) + num_contexts).repeat(batch)
        features = self._encode(x.flatten(0, 1), eot_index)
        return features.reshape(batch, num_classes, -1)

    def encode_plain(self, tokens: torch.Tensor) -> torch.Tensor:
        """Standard CLIP text encoding (no contexts): tokens K×L, L ≤ context_length → K×C."""
        if tokens.shape[1] > self.context_length:
            raise ValueError(
                f"{tokens.shape[1]} tokens exceed the context_length {self.context_length}"
            )
        return self._encode(self.token_embedding(tokens), tokens.argmax(dim=-1))


#: Words whose BPE encoding the tokenizer remembers (least recently used ones are forgotten).
BPE_CACHE_SIZE = 8192


class _NoNewEntries(dict):
    """A dict that ignores assignments: it keeps the entries it was built with."""

    def __setitem__(self, key, value) -> None:
        pass


@lru_cache(maxsize=1)
def _tokenizer():
    """OpenAI CLIP's BPE tokenizer, with a bounded, thread-safe word cache.

    ``SimpleTokenizer`` remembers the encoding of every word it has seen in a plain dict, which
    free-text prompts in a long-running process grow without bound: its dict keeps only the two
    special tokens it starts with, and an LRU cache of :data:`BPE_CACHE_SIZE` words wraps
    ``bpe`` instead.
    """
    from clip.simple_tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    tokenizer.cache = _NoNewEntries(tokenizer.cache)
    tokenizer.bpe = lru_cache(maxsize=BPE_CACHE_SIZE)(tokenizer.bpe)
    return tokenizer


def tokenize_class_names(names: Sequence[str], length: int = 5) -> torch.Tensor:
    """Tokenize class names as DenseCLIP does: SOT, ≤ length-2 BPE tokens, EOT, zero padding.

    Args:
        names: K class names (the prompts; e.g. mmseg's short ADE20K names).
        length: tokens per class (5 in DenseCLIP).
    Returns:
        K×length LongTensor.
    Raises:
        ValueError: for an empty list, or a name needing more than length-2 BPE tokens.
    """
    if isinstance(names, str):
        raise TypeError(f"names must be a sequence of class names, not the string {names!r}")
    if len(names) == 0:
        raise ValueError("no class names to tokenize")
    tokenizer = _tokenizer()
    sot, eot = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    result = torch.zeros(len(names), length, dtype=torch.long)
    for row, name in enumerate(names):
        bpe = tokenizer.encode(name)
        if len(bpe) > length - 2:
            first_synonym = name.split(",")[0].strip()
            fits = len(tokenizer.encode(first_synonym)) <= length - 2
            hint = f" such as {first_synonym!r}" if first_synonym != name and fits else ""
            raise ValueError(
                f"class name {name!r} has {len(bpe)} BPE tokens, more than the {length - 2} that "
                f"fit in {length} tokens (SOT + name + EOT); use a shorter name{hint}"
            )
        result[row, : len(bpe) + 2] = torch.tensor([sot, *bpe, eot])
    return result
