"""The tiny CLIP Mask R-CNN baseline (no text side) on the synthetic detection dataset."""

from denseclip.meta_arch import MMDetStyleGeneralizedRCNN

from ..common.models.clip_baseline import as_clip_baseline
from .mask_rcnn_denseclip_tiny import dataloader, lr_multiplier, model, optimizer, train

as_clip_baseline(model, MMDetStyleGeneralizedRCNN)
train.output_dir = "./output/synthetic/mask_rcnn_clip_tiny"
