"""Meta-architectures registered in detectron2's META_ARCH_REGISTRY."""

from .box_seg_loss import BoxSegAuxLossMixin
from .mmdet_inference import (
    MMDetStyleGeneralizedRCNN,
    MMDetStyleRetinaNet,
    SymmetricClampBox2BoxTransform,
    rescale_detections,
)
from .rcnn import DenseCLIPGeneralizedRCNN
from .retinanet import DenseCLIPRetinaNet
from .semantic_segmentor import DenseCLIPSemanticSegmentor, segment_image, sliding_windows
from .tta import PAPER_TTA_SCALES, SemanticSegmentorWithTTA

__all__ = [
    "BoxSegAuxLossMixin",
    "DenseCLIPGeneralizedRCNN",
    "DenseCLIPRetinaNet",
    "DenseCLIPSemanticSegmentor",
    "MMDetStyleGeneralizedRCNN",
    "MMDetStyleRetinaNet",
    "PAPER_TTA_SCALES",
    "SemanticSegmentorWithTTA",
    "SymmetricClampBox2BoxTransform",
    "rescale_detections",
    "segment_image",
    "sliding_windows",
]
