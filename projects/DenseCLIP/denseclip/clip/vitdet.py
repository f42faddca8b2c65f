"""CLIP's ViT image encoder for detection: one stride-16 map and windowed attention (ViTDet).

A plain CLIP ViT (OpenAI's semantics and parameter names: patch conv ``conv1``, class token,
positional embedding, ``ln_pre``, pre-norm blocks with QuickGELU, ``ln_post`` and ``proj`` into
the joint space) whose blocks attend within windows, as detectron2's ViTDet does (Li et al.,
*Exploring Plain Vision Transformer Backbones for Object Detection*): most blocks attend inside
non-overlapping windows of ``window_size``² patches, the others globally, so that an 800×1333 or
1024² image stays affordable. The single stride-16 map feeds detectron2's
``SimpleFeaturePyramid``.

The class token is what makes DenseCLIP's global embedding z̄, so it must see the whole image:
in a windowed block it attends to every token (one 1×N query, cheap), while each patch token
attends to the patch tokens of its window and to the class token, as every CLIP token attends
to the class token. With one window covering the grid this is exactly global attention.
"""

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.modeling.backbone.utils import get_abs_pos, window_partition, window_unpartition

from .checkpointing import recomputes_activations, run_segment
from .transformer import LayerNorm, ResidualAttentionBlock

__all__ = ["CLIPViTDet", "WindowedAttentionBlock", "window_attention", "window_padding_mask"]

#: The name of the single feature map (ViTDet's ``out_feature``).
FEATURE = "last_feat"


def window_padding_mask(grid: Tuple[int, int], window_size: int, device=None) -> torch.Tensor:
    """Which window cells hold a patch: ``window_partition``'s layout of an h×w grid padded to
    multiples of ``window_size``.

    Returns:
        nW×ws² bool, False on the padding (windows row-major over the padded grid).
    """
    ones = torch.ones(1, *grid, 1, device=device)
    cells, _ = window_partition(ones, window_size)
    return cells.flatten(1).bool()


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: Tuple[int, int], window_size: int
) -> torch.Tensor:
    """Multi-head attention over [class token, patch tokens] in windows.

    The class token (position 0) attends to all tokens. The patch tokens, an h×w grid in
    row-major order, are split into ``window_size``² windows (detectron2's ``window_partition``:
    the grid is padded at the bottom and right to multiples of the window); each attends to the
    class token and to the real patch tokens of its window (padding is masked out, so a window's
    output does not depend on how much of it is padding).

    Args:
        q, k, v: B×heads×(1+h·w)×d queries, keys and values.
        grid: (h, w).
        window_size: side of the windows in patches.
    Returns:
        B×heads×(1+h·w)×d.
    """
    batch, heads, _, dim = q.shape
    cls_out = F.scaled_dot_product_attention(q[:, :, :1], k, v)

    def windows(t: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """B×heads×(1+hw)×d patch part → (B·nW)×heads×ws²×d, and the padded (Hp, Wp)."""
        t = t[:, :, 1:].transpose(1, 2).reshape(batch, *grid, heads * dim)
        t, padded = window_partition(t, window_size)
        return t.reshape(t.shape[0], -1, heads, dim).transpose(1, 2), padded

    (q_win, padded), (k_win, _), (v_win, _) = windows(q), windows(k), windows(v)
    per_image = q_win.shape[0] // batch
    k_win = torch.cat([k[:, :, :1].repeat_interleave(per_image, dim=0), k_win], dim=2)
    v_win = torch.cat([v[:, :, :1].repeat_interleave(per_image, dim=0), v_win], dim=2)
    mask = None
    if padded != tuple(grid):
        cells = window_padding_mask(grid, window_size, q.device)
        mask = F.pad(cells, (1, 0), value=True).repeat(batch, 1)[:, None, None]
    out = F.scaled_dot_product_attention(q_win, k_win, v_win, attn_mask=mask)
    out = out.transpose(1, 2).reshape(-1, window_size, window_size, heads * dim)
    out = window_unpartition(out, window_size, padded, grid)  # B×h×w×(heads·d)
    out = out.reshape(batch, -1, heads, dim).transpose(1, 2)
    return torch.cat([cls_out, out], dim=2)


class WindowedAttentionBlock(ResidualAttentionBlock):
    """CLIP's pre-norm residual attention block (same parameters and names) on batch-first
    tokens, attending globally (``window_size`` 0) or in windows (:func:`window_attention`).

    Args:
        d_model: token width D.
        n_head: attention heads.
        window_size: window side in patches; 0 for global attention.
        drop_path: stochastic depth of both residual branches, per sample (tokens are
            batch-first here; ViTDet's choice).
    """

    def __init__(self, d_model: int, n_head: int, window_size: int = 0, drop_path: float = 0.0):
        super().__init__(d_model, n_head, drop_path=drop_path)
        self.window_size = window_size

    def _attend(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """x: B×(1+h·w)×D normalised tokens → B×(1+h·w)×D attention output."""
        attn = self.attn
        qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = (t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2) for t in qkv.chunk(3, -1))
        if self.window_size:
            out = window_attention(q, k, v, grid, self.window_size)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        return attn.out_proj(out.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        """x: B×(1+h·w)×D [class token, patch tokens of the h×w grid] → B×(1+h·w)×D."""
        x = x + self.drop_path(self._attend(self.ln_1(x), grid))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


class CLIPViTDet(nn.Module):
    """CLIP ViT image encoder for detection: a stride-``patch_size`` map and DenseCLIP's
    embeddings, with ViTDet's windowed attention.

    Positional embedding: stored for the (input_resolution / patch_size)² grid (CLIP's 14×14 at
    the default 224, so an OpenAI file loads as is) plus the class row; the grid is resized
    bicubically to the image's grid at every forward (detectron2's ``get_abs_pos``, as ViTDet).
    The class token enters as class_embedding + pos[0] (OpenAI CLIP; the segmentation encoder
    keeps the official DenseCLIP doubling instead).

    Args:
        input_resolution: image side the stored positional embedding is laid out for.
        patch_size: patch side, the output stride.
        width, layers, heads: token width D, depth, heads (ViT-B/16: 768, 12, 12).
        output_dim: joint embedding channels C of ``proj`` (512 for ViT-B/16).
        window_size: window side in patches of the windowed blocks (ViTDet: 14).
        window_block_indexes: the blocks that attend in windows (ViTDet ViT-B: all but 2, 5, 8,
            11, which attend globally); empty for global attention everywhere.
        drop_path_rate: stochastic depth of the last block, linear from 0 (ViTDet ViT-B: 0.1).
        use_act_checkpoint: in training with gradients on, recompute each block's activations
            in the backward pass instead of keeping them (less memory, one more forward).
        with_embeddings: build ``ln_post``/``proj`` and return z̄ and z (DenseCLIP); the CLIP
            baselines have neither.

    Attributes: ``stage_channels``/``stage_strides`` of the single map ``"last_feat"``,
    ``embed_dim`` (output_dim, None without embeddings), ``dense_embedding_stride``.
    """

    def __init__(
        self,
        input_resolution: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        output_dim: int = 512,
        window_size: int = 14,
        window_block_indexes: Sequence[int] = (0, 1, 3, 4, 6, 7, 9, 10),
        drop_path_rate: float = 0.1,
        use_act_checkpoint: bool = False,
        with_embeddings: bool = True,
    ):
        super().__init__()
        unknown = set(window_block_indexes) - set(range(layers))
        if unknown:
            raise ValueError(
                f"window_block_indexes {sorted(unknown)} are not blocks of a {layers}-layer ViT"
            )
        if window_block_indexes and window_size < 1:
            raise ValueError(f"window_size must be positive for windowed blocks, got {window_size}")
        if input_resolution % patch_size:
            raise ValueError(
                f"input_resolution {input_resolution} is not a multiple of patch_size {patch_size}"
            )
        scale = width**-0.5
        grid = input_resolution // patch_size
        self.input_resolution = input_resolution
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = LayerNorm(width)
        rates = torch.linspace(0, drop_path_rate, layers).tolist()
        blocks = [
            WindowedAttentionBlock(width, heads, window_size if i in window_block_indexes else 0, p)
            for i, p in enumerate(rates)
        ]
        # OpenAI's names: transformer.resblocks.<i>
        self.transformer = nn.ModuleDict({"resblocks": nn.ModuleList(blocks)})
        if with_embeddings:
            self.ln_post = LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.with_embeddings = with_embeddings
        self.use_act_checkpoint = use_act_checkpoint

        self.stage_channels = {FEATURE: width}
        self.stage_strides = {FEATURE: patch_size}
        self.dense_embedding_stride = patch_size
        self.embed_dim = output_dim if with_embeddings else None

    def tokens(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        """x: B×3×H×W → (B×(1+h·w)×D tokens after ``ln_pre``, grid (h, w) = (H, W) / patch)."""
        x = self.conv1(x)
        batch, width, height, grid_width = x.shape
        grid = (height, grid_width)
        position = get_abs_pos(self.positional_embedding[None], True, grid)  # 1×h×w×D
        patches = (x.permute(0, 2, 3, 1) + position.to(x.dtype)).reshape(batch, -1, width)
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype)
        x = torch.cat([cls.expand(batch, 1, width), patches], dim=1)
        return self.ln_pre(x), grid

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → {"last_feat": B×D×h×w, the last block's patch tokens} and, with
        embeddings, "global_embedding": B×C (z̄) and "dense_embedding": B×C×h×w (z), where
        h×w = (H, W) / patch_size (rounded down)."""
        x, grid = self.tokens(x)
        recompute = recomputes_activations(self, self.use_act_checkpoint)
        for block in self.transformer.resblocks:
            x = run_segment(block, x, grid, recompute=recompute)
        batch, _, width = x.shape
        outputs = {FEATURE: x[:, 1:].transpose(1, 2).reshape(batch, width, *grid)}
        if self.with_embeddings:
            embeddings = self.ln_post(x) @ self.proj  # B×(1+hw)×C
            outputs["global_embedding"] = embeddings[:, 0]
            dense = embeddings[:, 1:].transpose(1, 2)
            outputs["dense_embedding"] = dense.reshape(batch, -1, *grid)
        return outputs
