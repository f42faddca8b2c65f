"""CLIP's ViT image encoder turned into a 4-level feature pyramid, as in DenseCLIP.

Parameter names are OpenAI CLIP's ``visual.*`` names without the prefix, plus the official
DenseCLIP pyramid modules ``fpn1``..``fpn4``.
"""

from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .checkpointing import recomputes_activations, run_segment
from .stages import STAGE_STRIDES, STAGES
from .transformer import LayerNorm, Transformer

_BATCH_NORMS = {"BN": nn.BatchNorm2d, "SyncBN": nn.SyncBatchNorm}


def _upsample2x(channels: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)


class CLIPVisionTransformer(nn.Module):
    """CLIP ViT whose blocks ``out_indices`` feed a pyramid at strides 4, 8, 16, 32.

    Positional embedding: stored for the (input_resolution/patch_size)² grid plus the class row,
    bilinearly resized (align_corners=False) to the actual grid at every forward. As in the
    official DenseCLIP code, the class row of the positional embedding has ``class_embedding``
    added to it, so the class token enters the transformer as 2·class_embedding + pos[0]
    (OpenAI CLIP: class_embedding + pos[0]).

    Args:
        input_resolution: image side the stored positional embedding is laid out for.
        patch_size: must be 16 (the only pyramid layout of the official code used here).
        width: token width D (768 for ViT-B).
        layers, heads: transformer depth and heads.
        output_dim: embedding channels C of ``proj`` (512 for ViT-B/16).
        drop_path_rate: stochastic depth of the last block (linear from 0).
        out_indices: the 4 blocks whose patch tokens make res2..res5.
        norm: BatchNorm flavour inside fpn1: "BN" or "SyncBN" (official).
        with_embeddings: build ``ln_post``/``proj`` and return the embeddings (DenseCLIP); the
            official CLIP baseline has neither (``get_embeddings=False``).
        use_act_checkpoint: in training with gradients on, recompute each block's activations
            in the backward pass instead of keeping them (less memory, one more forward).

    Attributes: ``stage_channels`` (D for every level), ``stage_strides``, ``embed_dim``
    (output_dim, None without embeddings), ``dense_embedding_stride`` (16).
    """

    dense_embedding_stride = 16

    def __init__(
        self,
        input_resolution: int = 640,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        output_dim: int = 512,
        drop_path_rate: float = 0.0,
        out_indices: Sequence[int] = (3, 5, 7, 11),
        norm: str = "BN",
        with_embeddings: bool = True,
        use_act_checkpoint: bool = False,
    ):
        super().__init__()
        if patch_size != 16:
            raise ValueError(f"only patch_size 16 has a feature pyramid, got {patch_size}")
        indices = list(out_indices)
        increasing = indices == sorted(set(indices))
        if len(indices) != 4 or not increasing or not set(indices) <= set(range(layers)):
            raise ValueError(
                f"out_indices must be 4 increasing block indices below {layers}, got {out_indices}"
            )
        if norm not in _BATCH_NORMS:
            raise ValueError(f"norm must be one of {sorted(_BATCH_NORMS)}, got {norm!r}")
        self.input_resolution = input_resolution
        self.use_act_checkpoint = use_act_checkpoint
        self.spatial_size = input_resolution // patch_size
        self.out_indices = tuple(out_indices)
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn(self.spatial_size**2 + 1, width)
        )
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, drop_path_rate=drop_path_rate)
        if with_embeddings:
            self.ln_post = LayerNorm(width)
            self.proj = nn.Parameter(scale * torch.randn(width, output_dim))
        self.with_embeddings = with_embeddings

        self.fpn1 = nn.Sequential(
            nn.GroupNorm(1, width),
            _upsample2x(width),
            _BATCH_NORMS[norm](width),
            nn.GELU(),
            _upsample2x(width),
        )
        self.fpn2 = nn.Sequential(nn.GroupNorm(1, width), _upsample2x(width))
        self.fpn3 = nn.GroupNorm(1, width)
        self.fpn4 = nn.Sequential(nn.GroupNorm(1, width), nn.MaxPool2d(kernel_size=2, stride=2))

        self.stage_channels = {name: width for name in STAGES}
        self.stage_strides = dict(STAGE_STRIDES)
        self.embed_dim = output_dim if with_embeddings else None

    def fitted_positional_embedding(self, height: int, width: int) -> torch.Tensor:
        """(h·w+1)×D: class row (+ class_embedding, official) and the grid resized to h×w."""
        cls_pos = self.positional_embedding[:1] + self.class_embedding
        side = self.spatial_size
        grid = self.positional_embedding[1:].reshape(side, side, -1).permute(2, 0, 1)
        grid = F.interpolate(grid[None], size=(height, width), mode="bilinear")[0]
        return torch.cat([cls_pos, grid.flatten(1).t()])

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W (H, W multiples of 32) → {"res2": B×D×H/4×W/4, "res3": B×D×H/8×W/8,
        "res4": B×D×H/16×W/16, "res5": B×D×H/32×W/32} and, with embeddings,
        "global_embedding": B×output_dim, "dense_embedding": B×output_dim×H/16×W/16."""
        x = self.conv1(x)
        batch, channels, height, width = x.shape
        x = x.flatten(2).transpose(1, 2)  # B×hw×D
        cls_token = self.class_embedding.to(x.dtype).expand(batch, 1, channels)
        x = torch.cat([cls_token, x], dim=1)
        x = x + self.fitted_positional_embedding(height, width).to(x.dtype)
        x = self.ln_pre(x).transpose(0, 1)  # (1+hw)×B×D

        pyramid = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        outputs = {}
        recompute = recomputes_activations(self, self.use_act_checkpoint)
        for index, block in enumerate(self.transformer.resblocks):
            x = run_segment(block, x, recompute=recompute)
            if index in self.out_indices:
                level = self.out_indices.index(index)
                patches = x[1:].permute(1, 2, 0).reshape(batch, channels, height, width)
                outputs[STAGES[level]] = pyramid[level](patches.contiguous())
        if not self.with_embeddings:
            return outputs

        x = self.ln_post(x.transpose(0, 1)) @ self.proj  # B×(1+hw)×C
        outputs["global_embedding"] = x[:, 0]
        outputs["dense_embedding"] = x[:, 1:].transpose(1, 2).reshape(batch, -1, height, width)
        return outputs
