"""CLIP encoders in plain PyTorch, with OpenAI CLIP's parameter names.

Image encoders (:class:`CLIPResNet`, :class:`CLIPVisionTransformer`) return a dict with the stage
features ``res2``..``res5`` (:class:`CLIPViTDet`, the detection ViT: one map ``last_feat``) and
DenseCLIP's ``global_embedding`` (z̄, B×C) and ``dense_embedding`` (z, B×C×h×w).
:class:`CLIPTextEncoder` encodes tokenized class names with learnable contexts. Loading an OpenAI checkpoint is a prefix mapping: ``visual.`` → image
encoder, the text keys as they are → text encoder.
"""

from .resnet import AttentionPool2d, Bottleneck, CLIPResNet
from .stages import STAGES
from .text import CLIPTextEncoder, tokenize_class_names
from .transformer import LayerNorm, QuickGELU, ResidualAttentionBlock, Transformer
from .vit import CLIPVisionTransformer
from .vitdet import CLIPViTDet

__all__ = [
    "AttentionPool2d",
    "Bottleneck",
    "CLIPResNet",
    "CLIPTextEncoder",
    "CLIPVisionTransformer",
    "CLIPViTDet",
    "LayerNorm",
    "QuickGELU",
    "ResidualAttentionBlock",
    "STAGES",
    "Transformer",
    "tokenize_class_names",
]
