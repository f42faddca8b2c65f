"""Any backbone with DenseCLIP (paper §3.4, Table 5): an image encoder without CLIP pre-training.

:class:`ImageNetDenseEncoder` wraps any detectron2 :class:`Backbone` that has a stride-32 stage
(e.g. detectron2's ImageNet :class:`~detectron2.modeling.backbone.resnet.ResNet`) and adds a
randomly initialised attention pool of CLIP's form on that stage, so that the image encoder
returns the same dict as the CLIP encoders of :mod:`denseclip.clip` (``res2..res5``,
``global_embedding`` z̄, ``dense_embedding`` z) in the joint space of a frozen CLIP text
encoder. :class:`~denseclip.backbone.DenseCLIPBackbone` then works unchanged: the language
guidance (score maps and the pixel-text loss) trains the pool and the backbone.
"""

from typing import Dict

import torch
from torch import nn

from detectron2.modeling import Backbone

from .clip import AttentionPool2d

__all__ = ["ImageNetDenseEncoder"]


class ImageNetDenseEncoder(nn.Module):
    """A detectron2 backbone + a CLIP-style attention pool on its stride-32 feature.

    Args:
        backbone: a detectron2 Backbone returning ``res2..res5`` (``res5`` at stride 32).
        output_dim: C of the text encoder's joint space (1024 for RN50 CLIP's text encoder).
        heads: attention-pool heads (32, CLIP RN50's).
        input_resolution: image side the pool's positional embedding is laid out for
            ((input_resolution // 32)² + 1 rows, resized bilinearly to the feature map).
        pooled_feature: the stage the pool reads.

    Attributes: ``stage_channels``, ``stage_strides``, ``embed_dim`` (output_dim) and
    ``dense_embedding_stride``, as :class:`~denseclip.clip.CLIPResNet`.
    """

    def __init__(
        self,
        backbone: Backbone,
        output_dim: int = 1024,
        heads: int = 32,
        input_resolution: int = 512,
        pooled_feature: str = "res5",
    ):
        super().__init__()
        shapes = backbone.output_shape()
        if pooled_feature not in shapes:
            raise ValueError(f"{type(backbone).__name__} has no {pooled_feature!r} output")
        self.backbone = backbone
        self.pooled_feature = pooled_feature
        self.stage_channels = {name: shape.channels for name, shape in shapes.items()}
        self.stage_strides = {name: shape.stride for name, shape in shapes.items()}
        self.dense_embedding_stride = shapes[pooled_feature].stride
        self.embed_dim = output_dim
        channels = shapes[pooled_feature].channels
        self.attnpool = AttentionPool2d(
            input_resolution // self.dense_embedding_stride, channels, heads, output_dim
        )
        std = channels**-0.5  # CLIP's initialisation of the pool
        for proj in (self.attnpool.q_proj, self.attnpool.k_proj, self.attnpool.v_proj):
            nn.init.normal_(proj.weight, std=std)
        nn.init.normal_(self.attnpool.c_proj.weight, std=std)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → the backbone's features ({"res2": B×C2×H/4×W/4, ...}) and
        "global_embedding": B×output_dim, "dense_embedding": B×output_dim×H/32×W/32."""
        outputs = dict(self.backbone(x))
        global_embedding, dense = self.attnpool(outputs[self.pooled_feature])
        outputs["global_embedding"], outputs["dense_embedding"] = global_embedding, dense
        return outputs
