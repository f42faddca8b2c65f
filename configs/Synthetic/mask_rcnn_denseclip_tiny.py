"""A tiny DenseCLIP Mask R-CNN that trains on the built-in synthetic detection dataset on 2 CPU
cores.

The COCO model (mask_rcnn_denseclip_r50_fpn_1x_coco.py, mmdet's inference) over the tiny
backbone of retinanet_denseclip_tiny.py, with its data and schedule plus the instance masks (RLE,
hence ``bitmask``); ``use_tiny_mask_rcnn``: 64-channel FPN, narrow heads, anchors half the COCO
sizes, fewer sampled anchors, proposals and RoIs for 128x128 images with 1–4 shapes.
"""

from denseclip.data import SYNTHETIC_DET_CLASSES

from ..common.models.denseclip_sizes import use_tiny_mask_rcnn
from ..common.models.mask_rcnn_denseclip import model
from ..common.models.mmdet_inference import use_mmdet_inference
from .retinanet_denseclip_tiny import dataloader, lr_multiplier, optimizer, train

use_tiny_mask_rcnn(model, SYNTHETIC_DET_CLASSES)
use_mmdet_inference(model)

dataloader.train.mapper.update(use_instance_mask=True, instance_mask_format="bitmask")
train.output_dir = "./output/synthetic/mask_rcnn_denseclip_tiny"
