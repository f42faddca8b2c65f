"""CLIP's modified ResNet image encoder with its attention pool, returning dense outputs.

Parameter names are OpenAI CLIP's ``visual.*`` names without the prefix.
"""

import logging
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checkpointing import recomputes_activations, run_segment
from .stages import STAGE_STRIDES, STAGES

logger = logging.getLogger(__name__)


class Bottleneck(nn.Module):
    """CLIP bottleneck: strides are done by 2×2 average pools (after conv2, and before the 1×1
    downsample conv) instead of strided convolutions.

    Args:
        inplanes: input channels.
        planes: bottleneck channels; the output has ``planes * 4``.
        stride: spatial reduction of the block (1 or 2).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        outplanes = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, outplanes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(outplanes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != outplanes:
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, outplanes, 1, bias=False)),
                        ("1", nn.BatchNorm2d(outplanes)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×inplanes×H×W → B×4·planes×H/stride×W/stride."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """CLIP's QKV attention pool, returning every token (DenseCLIP's global z̄ and dense z).

    The tokens are [mean of the map, each position], plus a positional embedding stored for a
    ``spacial_dim``² grid and fitted to the actual h×w at every forward: bilinearly
    (``pos_embed_resize="bilinear"``, align_corners=False, the official segmentation code) or by
    taking its top-left h×w corner (``"crop"``, the official detection code). The class row is
    kept as is. A map larger than the stored grid (in either dimension), which the official
    detection code rejects, gets the bilinear fit in crop mode too, with a warning logged once
    per module: a detector then also runs on images larger than its ``input_resolution``.

    Attention is written with einsum so that FLOP counters see its matmuls. Its B×heads×L×L
    weights grow with the square of the map's area, so queries are processed in chunks whose
    weights hold at most :attr:`max_attention_elements` elements; below that bound (every
    training and test size of the paper) the whole map is one chunk, and chunked outputs equal
    unchunked ones up to float rounding.

    Args:
        spacial_dim: side of the stored positional-embedding grid (input_resolution // 32).
        embed_dim: input channels C.
        num_heads: attention heads.
        output_dim: output channels (``c_proj``); defaults to embed_dim.
        pos_embed_resize: "bilinear" or "crop".
    """

    #: Most attention-weight elements (batch × heads × queries × tokens) computed at once: 2**27,
    #: 512 MiB in float32; every training and test size of the paper takes one chunk.
    max_attention_elements = 2**27

    def __init__(
        self,
        spacial_dim: int,
        embed_dim: int,
        num_heads: int,
        output_dim: Optional[int] = None,
        pos_embed_resize: str = "bilinear",
    ):
        super().__init__()
        if pos_embed_resize not in ("bilinear", "crop"):
            raise ValueError(
                f"pos_embed_resize must be 'bilinear' or 'crop', not {pos_embed_resize!r}"
            )
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.positional_embedding = nn.Parameter(
            torch.randn(spacial_dim**2 + 1, embed_dim) / embed_dim**0.5
        )
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
        self.spacial_dim = spacial_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.pos_embed_resize = pos_embed_resize
        self._warned_larger_map = False

    def fitted_positional_embedding(self, height: int, width: int) -> torch.Tensor:
        """The stored (s²+1)×C embedding fitted to an h×w map → (h·w+1)×C (row-major)."""
        cls_pos, grid = self.positional_embedding[:1], self.positional_embedding[1:]
        side = self.spacial_dim
        grid = grid.reshape(side, side, -1)
        if self.pos_embed_resize == "crop" and height <= side and width <= side:
            grid = grid[:height, :width]
        else:
            if self.pos_embed_resize == "crop":
                self._warn_larger_map(height, width)
            grid = F.interpolate(grid.permute(2, 0, 1)[None], size=(height, width), mode="bilinear")
            grid = grid[0].permute(1, 2, 0)
        return torch.cat([cls_pos, grid.reshape(height * width, -1)])

    def _warn_larger_map(self, height: int, width: int) -> None:
        if self._warned_larger_map:
            return
        self._warned_larger_map = True
        side = self.spacial_dim
        logger.warning(
            f"AttentionPool2d: a {height}×{width} feature map is larger than the {side}×{side} "
            "grid of the positional embedding, which crop mode (the official detection code) "
            "cannot crop: it is resized bilinearly instead, as in segmentation, for this and "
            "every larger map. To crop on such images, raise the image encoder's "
            f"input_resolution to {max(height, width)} × the feature stride or more (and "
            "fine-tune). This warning is logged once per module."
        )

    def _attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: B×Q×heads×d (scaled), k, v: B×L×heads×d → B×Q×(heads·d)."""
        weights = torch.einsum("blhd,bmhd->bhlm", q, k).softmax(dim=-1)
        return torch.einsum("bhlm,bmhd->blhd", weights, v).flatten(2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: B×C×h×w → (global B×output_dim, dense B×output_dim×h×w)."""
        batch, _, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B×hw×C
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.fitted_positional_embedding(height, width).to(x.dtype)

        q, k, v = (
            proj(tokens).unflatten(-1, (self.num_heads, self.head_dim))  # B×L×heads×d
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        q = q * self.head_dim**-0.5
        length = q.shape[1]
        chunk = max(1, self.max_attention_elements // (batch * self.num_heads * length))
        if chunk >= length:
            attended = self._attention(q, k, v)
        else:
            chunks = [self._attention(q[:, i : i + chunk], k, v) for i in range(0, length, chunk)]
            attended = torch.cat(chunks, dim=1)
        out = self.c_proj(attended)  # B×L×out
        dense = out[:, 1:].transpose(1, 2).reshape(batch, -1, height, width)
        return out[:, 0], dense


class CLIPResNet(nn.Module):
    """CLIP's modified ResNet (RN50: layers [3, 4, 6, 3]; RN101: [3, 4, 23, 3]).

    A 3-conv stem (3×3 stride 2 → width/2, 3×3 → width/2, 3×3 → width, each BN+ReLU) and a 2×2
    average pool, then four stages of :class:`Bottleneck` and, optionally, the attention pool.

    Args:
        layers: number of bottlenecks of each of the 4 stages.
        width: stem width; stage i outputs ``width * 2**(i+2)`` channels.
        output_dim: embedding channels C of the attention pool (1024 RN50, 512 RN101).
        heads: attention-pool heads; defaults to width*32 // 64 like OpenAI CLIP (32 for width
            64; the official DenseCLIP code always uses 32).
        input_resolution: image side the stored positional embedding is laid out for
            ((input_resolution // 32)² + 1 rows).
        with_attention_pool: build ``attnpool`` and return the embeddings.
        pos_embed_resize: how the attention pool fits its positional embedding to the feature
            map: "bilinear" (official segmentation) or "crop" (official detection; bilinear, with
            a warning, for maps larger than the stored grid).
        use_act_checkpoint: in training with gradients on, recompute the activations of the stem
            and of each stage in the backward pass instead of keeping them (less memory, one
            more forward of the trunk).

    Attributes: ``stage_channels`` and ``stage_strides`` ({"res2".."res5": ...}), ``embed_dim``
    (output_dim, or None without the pool), ``dense_embedding_stride`` (32).
    """

    dense_embedding_stride = 32

    def __init__(
        self,
        layers: Sequence[int],
        width: int = 64,
        output_dim: int = 1024,
        heads: Optional[int] = None,
        input_resolution: int = 224,
        with_attention_pool: bool = True,
        pos_embed_resize: str = "bilinear",
        use_act_checkpoint: bool = False,
    ):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must list 4 stage depths, got {list(layers)}")
        self.input_resolution = input_resolution
        self.use_act_checkpoint = use_act_checkpoint
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)

        inplanes = width
        for index, (depth, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = width * 2**index
            blocks = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            blocks += [Bottleneck(inplanes, planes) for _ in range(1, depth)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))

        self.stage_channels = {name: width * 4 * 2**i for i, name in enumerate(STAGES)}
        self.stage_strides = dict(STAGE_STRIDES)
        self.embed_dim = output_dim if with_attention_pool else None
        self.attnpool = None
        if with_attention_pool:
            self.attnpool = AttentionPool2d(
                input_resolution // 32,
                width * 32,
                heads or width * 32 // 64,
                output_dim,
                pos_embed_resize,
            )
        self._initialize_parameters()

    def _initialize_parameters(self):
        """OpenAI CLIP's initialisation: attention-pool weights N(0, C^-1/2), and the last BN of
        every bottleneck zeroed so that each block starts as the identity."""
        if self.attnpool is not None:
            std = self.attnpool.c_proj.in_features**-0.5
            for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj):
                nn.init.normal_(proj.weight, std=std)
            nn.init.normal_(self.attnpool.c_proj.weight, std=std)
        for module in self.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """x: B×3×H×W → B×width×H/4×W/4: three 3×3 convs (the first with stride 2), 2×2 pool."""
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        return self.avgpool(x)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W (H, W multiples of 32) → {"res2": B×4w×H/4×W/4, "res3": B×8w×H/8×W/8,
        "res4": B×16w×H/16×W/16, "res5": B×32w×H/32×W/32} and, with the attention pool,
        "global_embedding": B×output_dim, "dense_embedding": B×output_dim×H/32×W/32."""
        recompute = recomputes_activations(self, self.use_act_checkpoint)
        x = run_segment(self, x, recompute=recompute, function=self.stem)
        outputs = {}
        for index, name in enumerate(STAGES):
            x = run_segment(getattr(self, f"layer{index + 1}"), x, recompute=recompute)
            outputs[name] = x
        if self.attnpool is not None:
            outputs["global_embedding"], outputs["dense_embedding"] = self.attnpool(x)
        return outputs
