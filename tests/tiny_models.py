"""Every model type of the project as a tiny LazyConfig, for tests that run them all.

The configs/Synthetic/ configs, plus a tiny CLIP ViT (DenseCLIP and the CLIP baseline) made by
overriding the tiny ResNet configs: a width-32 ViT/16 of 4 blocks (all 4 feed the pyramid) at
128², embedding into the tiny text space (64).

Imported by the test modules as ``tiny_models`` (pytest puts ``tests/`` on ``sys.path``).
"""

import torch

from detectron2.config import LazyCall as L
from detectron2.config import instantiate

from denseclip.clip import CLIPVisionTransformer

#: Semantic segmentation: {model type: (configs/Synthetic config, ViT encoder)}.
SEGMENTATION = {
    "denseclip_resnet": ("denseclip_fpn_tiny", False),
    "clip_resnet_baseline": ("fpn_clip_tiny", False),
    "denseclip_vit": ("denseclip_fpn_tiny", True),
    "clip_vit_baseline": ("fpn_clip_tiny", True),
    "pre_model_prompting": ("denseclip_fpn_pre_model_tiny", False),
    "language_only_prompting": ("denseclip_fpn_language_only_tiny", False),
    "imagenet_resnet": ("denseclip_fpn_imagenet_tiny", False),
    "swin": ("denseclip_fpn_swin_tiny", False),
}
#: Detection: {model type: configs/Synthetic config}.
DETECTION = {
    "retinanet_denseclip": "retinanet_denseclip_tiny",
    "retinanet_clip": "retinanet_clip_tiny",
    "mask_rcnn_denseclip": "mask_rcnn_denseclip_tiny",
    "mask_rcnn_clip": "mask_rcnn_clip_tiny",
}
ALL = [*SEGMENTATION, *DETECTION]


def tiny_vit(with_embeddings: bool = True):
    """The tiny ViT encoder node; without embeddings for the CLIP baseline (no ln_post/proj)."""
    return L(CLIPVisionTransformer)(
        input_resolution=128,
        patch_size=16,
        width=32,
        layers=4,
        heads=2,
        output_dim=64,  # the tiny text encoder's embed_dim
        out_indices=(0, 1, 2, 3),
        norm="BN",
        with_embeddings=with_embeddings,
    )


def load_config(load_tiny_config, model_type: str):
    """The LazyConfig of ``model_type`` (a key of :data:`SEGMENTATION` or :data:`DETECTION`),
    through conftest's ``load_tiny_config``."""
    if model_type in DETECTION:
        name, vit = DETECTION[model_type], False
    else:
        name, vit = SEGMENTATION[model_type]
    cfg = load_tiny_config(name)
    if vit:
        cfg.model.backbone.bottom_up.image_encoder = tiny_vit(name.startswith("denseclip"))
    return cfg


def build_model(load_tiny_config, model_type: str, seed: int = 0) -> torch.nn.Module:
    """The eval-mode model of ``model_type``, its weights drawn with ``seed``."""
    cfg = load_config(load_tiny_config, model_type)
    torch.manual_seed(seed)
    return instantiate(cfg.model).eval()
