"""DenseCLIP with an ImageNet ResNet-101 (paper Table 5) + Semantic FPN on ADE20K-150.

As the R-50 config, with detectron2's ResNet-101; the text encoder stays CLIP RN50's (C = 1024).
"""

from .denseclip_fpn_r50_imagenet_512x512_80k import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

model.backbone.bottom_up.image_encoder.backbone.stages.depth = 101

train.output_dir = "./output/denseclip_fpn_r101_imagenet_512x512_80k"
