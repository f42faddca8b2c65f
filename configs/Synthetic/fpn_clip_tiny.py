"""The tiny CLIP + Semantic FPN baseline (no text side) on the synthetic dataset."""

from detectron2.config import LazyCall as L

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up = L(CLIPImageBackbone)(
    image_encoder=L(CLIPResNet)(
        layers=[1, 1, 1, 1], width=16, input_resolution=128, with_attention_pool=False
    )
)
train.output_dir = "./output/synthetic/fpn_clip_tiny"
