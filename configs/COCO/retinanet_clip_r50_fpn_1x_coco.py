"""CLIP RN50 + RetinaNet baseline on COCO (official retinanet_clip_r50_fpn_1x_coco).

DenseCLIP's recipe (mmdet 2.17's inference) without the text side: no attention pool, no score
maps, no auxiliary loss.
"""

from ..common.models.mmdet_inference import use_mmdet_inference
from ..common.models.retinanet_clip import model
from .retinanet_denseclip_r50_fpn_1x_coco import dataloader, lr_multiplier, optimizer, train

use_mmdet_inference(model)
train.output_dir = "./output/retinanet_clip_r50_fpn_1x_coco"
