"""CLIP RN101 + RetinaNet baseline on COCO (official retinanet_clip_r101_fpn_1x_coco)."""

from .retinanet_clip_r50_fpn_1x_coco import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [3, 4, 23, 3]
train.output_dir = "./output/retinanet_clip_r101_fpn_1x_coco"
