"""DenseCLIP RN50 + Mask R-CNN on COCO (paper Table 3: 40.2 box AP, 37.6 mask AP; 327 GFLOPs,
67 M parameters).

The RetinaNet recipe (retinanet_denseclip_r50_fpn_1x_coco.py) with the official Mask R-CNN
learning rate, AdamW 2e-4, and the instance masks loaded. mmdet 2.17's inference.
"""

from ..common.data.coco_instance import dataloader
from ..common.models.mask_rcnn_denseclip import model
from ..common.models.mmdet_inference import use_mmdet_inference
from .retinanet_denseclip_r50_fpn_1x_coco import lr_multiplier, optimizer, train

use_mmdet_inference(model)
optimizer.lr = 2e-4
train.output_dir = "./output/mask_rcnn_denseclip_r50_fpn_1x_coco"
