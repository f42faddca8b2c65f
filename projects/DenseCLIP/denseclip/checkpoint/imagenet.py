"""Initial weights for the any-backbone models (paper §3.4): an ImageNet backbone + CLIP's text
encoder, from two files, combined into one ``train.init_checkpoint``."""

import os
from typing import Dict, Set

import torch
from torch import nn

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling.backbone import SwinTransformer

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
        imagenet_path: any file detectron2's checkpointer loads into the backbone. ResNets: the
            output of detectron2's ``tools/convert-torchvision-to-d2.py`` (torchvision weights)
            or an MSRA ``R-50.pkl`` (Caffe2 names); detectron2's matching heuristics map the
            names. Swin: a release file of microsoft/Swin-Transformer
            (``swin_tiny_patch4_window7_224.pth``, ``{"model": state dict}``), whose names are
            those of detectron2's SwinTransformer; its classifier (``norm``, ``head``) is unused.
        clip_model: the ``"model"`` dict of ``tools/convert_clip.py``'s output; only its text
            encoder is kept.
    Returns:
        ``{IMAGENET_BACKBONE_PREFIX + key: ...}`` of the whole ImageNet backbone and the
        ``TEXT_ENCODER_PREFIX`` keys of the CLIP file.
    Raises:
        FileNotFoundError: when there is no file at ``imagenet_path``.
        ValueError: when the ImageNet file leaves backbone weights missing (other than those a
            detection backbone adds to the classifier, see :func:`_added_for_dense_prediction`),
            or the CLIP file has no text encoder.
    """
    backbone = model.get_submodule(IMAGENET_BACKBONE_PREFIX.rstrip("."))
    if not os.path.isfile(imagenet_path):
        raise FileNotFoundError(f"no ImageNet weights file at {imagenet_path!r}")
    checkpointer = _IncompatibleKeysCheckpointer(backbone)
    checkpointer.load(imagenet_path, checkpointables=[])
    missing = [
        k
        for k in checkpointer.incompatible.missing_keys
        if k not in _added_for_dense_prediction(backbone)
    ]
    if missing:
        raise ValueError(
            f"{imagenet_path} leaves {len(missing)} weights of the {type(backbone).__name__} "
            f"backbone missing, e.g. {missing[:3]}: wrong depth or size, or a file of another "
            "architecture?"
        )
    text = {k: v for k, v in clip_model.items() if k.startswith(TEXT_ENCODER_PREFIX)}
    if not text:
        raise ValueError(f"the CLIP weights have no {TEXT_ENCODER_PREFIX}* keys")
    combined = {IMAGENET_BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    combined.update(text)
    return combined


class _IncompatibleKeysCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer (file formats, name matching) keeping the incompatible keys of
    its last :meth:`load` as ``incompatible``."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _added_for_dense_prediction(backbone: nn.Module) -> Set[str]:
    """Weights of ``backbone`` that its ImageNet classifier does not have: detectron2's Swin
    normalises each output with a LayerNorm of its own (``norm{i}``, as the official Swin
    detection and segmentation code), which starts from its default initialisation."""
    if not isinstance(backbone, SwinTransformer):
        return set()
    return {f"norm{i}.{p}" for i in backbone.out_indices for p in ("weight", "bias")}
