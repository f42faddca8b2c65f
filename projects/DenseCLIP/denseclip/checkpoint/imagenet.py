"""Initial weights for the any-backbone models (paper §3.4): an ImageNet backbone + CLIP's text
encoder, from two files, combined into one ``train.init_checkpoint``."""

import os
import re
from typing import Dict, Mapping, Optional

import torch
from torch import nn

from detectron2.modeling.backbone import SwinTransformer

from .checkpointer import SafeDetectionCheckpointer
from .clip import TEXT_ENCODER_PREFIX

__all__ = [
    "IMAGENET_BACKBONE_PREFIX",
    "combine_imagenet_and_clip",
    "torchvision_resnet_to_detectron2",
]

#: Where :class:`~denseclip.imagenet_backbone.ImageNetDenseEncoder` keeps its detectron2 backbone.
IMAGENET_BACKBONE_PREFIX = "backbone.bottom_up.image_encoder.backbone."

_BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")

# Entries of ImageNet classification files that no dense backbone has: ResNet classifiers
# (torchvision/detectron2-converted ``fc``, Caffe2 ``fc1000_*``), Swin's final norm and head and
# its attention-mask buffers.
_CLASSIFIER = re.compile(r"^(stem\.)?(fc|fc1000)[._]|^head\.|^norm\.|attn_mask$")


def combine_imagenet_and_clip(
    model: nn.Module, imagenet_path: str, clip_model: Dict[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """The pretrained weights of an any-backbone DenseCLIP model, as one state dict.

    Backbone weights that classification files lack by design (:func:`_absent_by_design`) keep
    their initialisation; any other missing weight, or a file weight the backbone lacks (other
    than the classifier's), is an error.

    Args:
        model: the model built from the config (its ImageNet backbone receives the weights).
        imagenet_path: any file detectron2's checkpointer loads into the backbone (read by
            :class:`~.checkpointer.SafeDetectionCheckpointer`). ResNets: a
            torchvision release (``resnet50-0676ba61.pth``, renamed by
            :func:`torchvision_resnet_to_detectron2`), the output of detectron2's
            ``tools/convert-torchvision-to-d2.py`` or an MSRA ``R-50.pkl`` (Caffe2 names, mapped
            by detectron2's matching heuristics). Swin: a release file of
            microsoft/Swin-Transformer (``swin_tiny_patch4_window7_224.pth``), whose names are
            those of detectron2's SwinTransformer; its classifier (``norm``, ``head``) is unused.
        clip_model: the ``"model"`` dict of ``tools/convert_clip.py``'s output; only its text
            encoder is kept.
    Returns:
        ``{IMAGENET_BACKBONE_PREFIX + key: ...}`` of the whole ImageNet backbone and the
        ``TEXT_ENCODER_PREFIX`` keys of the CLIP file.
    Raises:
        FileNotFoundError: when there is no file at ``imagenet_path``.
        ValueError: when the ImageNet file does not fit the backbone (see above), or the CLIP
            file has no text encoder.
    """
    backbone = model.get_submodule(IMAGENET_BACKBONE_PREFIX.rstrip("."))
    if not os.path.isfile(imagenet_path):
        raise FileNotFoundError(f"no ImageNet weights file at {imagenet_path!r}")
    checkpointer = _ImageNetCheckpointer(backbone)
    checkpointer.load(imagenet_path, checkpointables=[])
    missing = [
        k
        for k in checkpointer.incompatible.missing_keys
        if not _absent_by_design(k, backbone, checkpointer.author)
    ]
    if missing:
        raise ValueError(
            f"{imagenet_path} leaves {len(missing)} weights of the {type(backbone).__name__} "
            f"backbone missing, e.g. {missing[:3]}: wrong depth or size, or a file of another "
            "architecture?"
        )
    extra = [k for k in checkpointer.incompatible.unexpected_keys if not _CLASSIFIER.search(k)]
    if extra:
        raise ValueError(
            f"{imagenet_path} has {len(extra)} weights that the {type(backbone).__name__} "
            f"backbone of the config lacks, e.g. {extra[:3]}: a deeper model than the config's?"
        )
    text = {k: v for k, v in clip_model.items() if k.startswith(TEXT_ENCODER_PREFIX)}
    if not text:
        raise ValueError(f"the CLIP weights have no {TEXT_ENCODER_PREFIX}* keys")
    combined = {IMAGENET_BACKBONE_PREFIX + k: v for k, v in backbone.state_dict().items()}
    combined.update(text)
    return combined


def torchvision_resnet_to_detectron2(state_dict: Mapping[str, torch.Tensor]) -> Dict:
    """A torchvision ResNet state dict under detectron2's ResNet names (the renaming of
    detectron2's ``tools/convert-torchvision-to-d2.py``): ``conv1``/``bn1`` → ``stem.conv1``
    (+``.norm``), ``layer{i}`` → ``res{i+1}``, ``bn{j}`` → ``conv{j}.norm``, ``downsample.0/1`` →
    ``shortcut`` (+``.norm``). The classifier ``fc`` and BN step counters are dropped."""
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        new = key if key.startswith("layer") else "stem." + key
        new = re.sub(r"^layer(\d)", lambda m: f"res{int(m.group(1)) + 1}", new)
        new = re.sub(r"\bbn(\d)\b", r"conv\1.norm", new)
        new = new.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        renamed[new] = value
    return renamed


def _is_torchvision_resnet(state_dict: Mapping) -> bool:
    return "layer1.0.conv1.weight" in state_dict and "conv1.weight" in state_dict


class _ImageNetCheckpointer(SafeDetectionCheckpointer):
    """detectron2's checkpointer (file formats read safely, name matching) that also reads
    torchvision ResNet releases and keeps the file's ``author`` and the ``incompatible`` keys of its last
    :meth:`load`."""

    def _load_file(self, filename):
        loaded = super()._load_file(filename)
        if _is_torchvision_resnet(loaded["model"]):
            loaded["model"] = torchvision_resnet_to_detectron2(loaded["model"])
        self.author = loaded.get("__author__")
        return loaded

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def _absent_by_design(key: str, backbone: nn.Module, author: Optional[str]) -> bool:
    """Whether backbone weight ``key`` is missing from an ImageNet classification file by design:
    detectron2's Swin normalises each output with a LayerNorm of its own (``norm{i}``, as the
    official Swin detection and segmentation code), which starts from its initialisation; MSRA's
    Caffe2 ResNets (``author`` "Caffe2") have their BN statistics folded into the affine weights
    (``_bn_s``, ``_bn_b``), so the running mean and variance keep their initial 0 and 1, which is
    exactly the folded model."""
    if isinstance(backbone, SwinTransformer) and re.fullmatch(r"norm\d+\.(weight|bias)", key):
        return True
    return author == "Caffe2" and key.endswith(_BN_STATISTICS)
