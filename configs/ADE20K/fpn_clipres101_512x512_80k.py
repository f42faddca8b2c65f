"""CLIP RN101 + Semantic FPN baseline on ADE20K-150 (paper Table 1: 42.7 mIoU SS, 44.3 MS)."""

from .fpn_clipres50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [3, 4, 23, 3]
train.output_dir = "./output/fpn_clipres101_512x512_80k"
