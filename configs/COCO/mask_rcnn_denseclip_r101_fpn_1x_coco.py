"""DenseCLIP RN101 + Mask R-CNN on COCO (official mask_rcnn_denseclip_r101_fpn_1x_coco).

Same recipe as RN50; RN101's joint embedding space has 512 channels.
"""

from ..common.models.denseclip_sizes import use_rn101
from .mask_rcnn_denseclip_r50_fpn_1x_coco import dataloader, lr_multiplier, model, optimizer, train

use_rn101(model.backbone.bottom_up)

train.output_dir = "./output/mask_rcnn_denseclip_r101_fpn_1x_coco"
