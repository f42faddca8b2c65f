"""CLIP RN101 + Mask R-CNN baseline on COCO (official mask_rcnn_clip_r101_fpn_1x_coco)."""

from .mask_rcnn_clip_r50_fpn_1x_coco import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [3, 4, 23, 3]
train.output_dir = "./output/mask_rcnn_clip_r101_fpn_1x_coco"
