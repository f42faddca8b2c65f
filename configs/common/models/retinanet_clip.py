"""The CLIP RN50 + RetinaNet baseline (official retinanet_clip_r50_fpn_1x_coco model): the DenseCLIP
RetinaNet without the text side — detectron2's RetinaNet (``MMDetStyleRetinaNet``: the COCO
configs set mmdet's inference) and FPN over the CLIP image encoder (no attention pool, no score maps, no auxiliary loss).
"""

from denseclip.meta_arch import MMDetStyleRetinaNet

from .clip_baseline import as_clip_baseline
from .retinanet_denseclip import model

as_clip_baseline(model, MMDetStyleRetinaNet)
