"""The CLIP RN50 + Mask R-CNN baseline (official mask_rcnn_clip_r50_fpn_1x_coco model): the
DenseCLIP Mask R-CNN without the text side — detectron2's GeneralizedRCNN
(``MMDetStyleGeneralizedRCNN``: the COCO configs set mmdet's inference) and FPN over the CLIP
image encoder (no attention pool, no score maps, no auxiliary loss)."""

from denseclip.meta_arch import MMDetStyleGeneralizedRCNN

from .clip_baseline import as_clip_baseline
from .mask_rcnn_denseclip import model

as_clip_baseline(model, MMDetStyleGeneralizedRCNN)
