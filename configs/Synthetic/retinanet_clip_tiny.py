"""The tiny CLIP RetinaNet baseline (no text side) on the synthetic detection dataset."""

from denseclip.meta_arch import MMDetStyleRetinaNet

from ..common.models.clip_baseline import as_clip_baseline
from .retinanet_denseclip_tiny import dataloader, lr_multiplier, model, optimizer, train

as_clip_baseline(model, MMDetStyleRetinaNet)
train.output_dir = "./output/synthetic/retinanet_clip_tiny"
