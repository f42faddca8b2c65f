"""Meta-architectures registered in detectron2's META_ARCH_REGISTRY."""

from .box_seg_loss import BoxSegAuxLossMixin
from .rcnn import DenseCLIPGeneralizedRCNN
from .retinanet import DenseCLIPRetinaNet
from .semantic_segmentor import DenseCLIPSemanticSegmentor, segment_image, sliding_windows
from .tta import PAPER_TTA_SCALES, SemanticSegmentorWithTTA

__all__ = [
    "BoxSegAuxLossMixin",
    "DenseCLIPGeneralizedRCNN",
    "DenseCLIPRetinaNet",
    "DenseCLIPSemanticSegmentor",
    "PAPER_TTA_SCALES",
    "SemanticSegmentorWithTTA",
    "segment_image",
    "sliding_windows",
]
