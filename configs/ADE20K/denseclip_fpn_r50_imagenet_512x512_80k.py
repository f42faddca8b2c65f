"""DenseCLIP with an ImageNet ResNet-50 (paper Table 5, any backbone) + Semantic FPN, ADE20K-150.

detectron2's ResNet-50 (torchvision's ImageNet weights) under a randomly initialised CLIP-style
attention pool on res5 that maps into the joint space of CLIP RN50's frozen text encoder
(C = 1024); learnable contexts, context decoder, score maps and pixel-text loss as in DenseCLIP
RN50. Weights: see tools/combine_imagenet_clip.py.
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BasicStem, ResNet

from denseclip.imagenet_backbone import ImageNetDenseEncoder

from .denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder = L(ImageNetDenseEncoder)(
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=64, norm="SyncBN"),
        stages=L(ResNet.make_default_stages)(
            depth=50,
            stride_in_1x1=False,  # torchvision weights
            norm="SyncBN",
        ),
        out_features=["res2", "res3", "res4", "res5"],
        freeze_at=0,  # mmseg's Semantic FPN trains every stage (SyncBN)
    ),
    output_dim=1024,  # CLIP RN50's text embedding width
    heads=32,
    input_resolution=512,
)
# torchvision's ImageNet normalisation (RGB, 0..255)
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]
# the ImageNet backbone at 0.1x like the CLIP image encoder, its new attention pool at 1x
optimizer.params.custom_keys["bottom_up.image_encoder.attnpool."] = {"lr_mult": 1.0}

train.output_dir = "./output/denseclip_fpn_r50_imagenet_512x512_80k"
