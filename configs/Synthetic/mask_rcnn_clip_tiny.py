"""The tiny CLIP Mask R-CNN baseline (no text side) on the synthetic detection dataset."""

from detectron2.config import LazyCall as L
from detectron2.modeling import FPN, GeneralizedRCNN

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet

from .mask_rcnn_denseclip_tiny import dataloader, lr_multiplier, model, optimizer, train

model._target_ = GeneralizedRCNN
del model.tau, model.aux_loss_weight
model.backbone._target_ = FPN
model.backbone.bottom_up = L(CLIPImageBackbone)(
    image_encoder=L(CLIPResNet)(
        layers=[1, 1, 1, 1], width=16, input_resolution=128, with_attention_pool=False
    )
)
train.output_dir = "./output/synthetic/mask_rcnn_clip_tiny"
