"""Initial weights for the any-backbone models (paper §3.4): an ImageNet backbone + CLIP's text
encoder, from two files, combined into one ``train.init_checkpoint``."""

from typing import Dict

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer

from .clip import TEXT_ENCODER_PREFIX

__all__ = ["IMAGENET_BACKBONE_PREFIX", "combine_imagenet_and_clip"]

#: Where :class:`~denseclip.imagenet_backbone.ImageNetDenseEncoder` keeps its detectron2 backbone.
IMAGENET_BACKBONE_PREFIX = "backbone.bottom_up.image_encoder.backbone."


def combine_imagenet_and_clip(
    model: nn.Module, imagenet_path: str, clip_model: Dict[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """The pretrained weights of an any-backbone DenseCLIP model, as one state dict.

    Args:
        model: the model built from the config (its ImageNet backbone receives the weights).
        imagenet_path: any file detectron2's checkpointer loads into its ResNet: the output of
            detectron2's ``tools/convert-torchvision-to-d2.py`` (torchvision weights) or an MSRA
            ``R-50.pkl`` (Caffe2 names); detectron2's matching heuristics map the names.
        clip_model: the ``"model"`` dict of ``tools/convert_clip.py``'s output; only its text
            encoder is kept.
    Returns:
        ``{IMAGENET_BACKBONE_PREFIX + key: ...}`` of the whole ImageNet backbone and the
        ``TEXT_ENCODER_PREFIX`` keys of the CLIP file.
    Raises:
        ValueError: when the ImageNet file leaves backbone weights missing, or the CLIP file has
            no text encoder.
    """
    backbone = model.get_submodule(IMAGENET_BACKBONE_PREFIX.rstrip("."))
    checkpointer = DetectionCheckpointer(backbone)
    incompatible = checkpointer._load_model(checkpointer._load_file(imagenet_path))
    if incompatible.missing_keys:
        raise ValueError(
            f"{imagenet_path} leaves {len(incompatible.missing_keys)} backbone weights missing, "
            f"e.g. {incompatible.missing_keys[:3]}: wrong depth or not a ResNet file?"
        )
    text = {k: v for k, v in clip_model.items() if k.startswith(TEXT_ENCODER_PREFIX)}
    if not text:
        raise ValueError(f"the CLIP weights have no {TEXT_ENCODER_PREFIX}* keys")
    combined = {IMAGENET_BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    combined.update(text)
    return combined
