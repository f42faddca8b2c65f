"""The tiny CLIP RetinaNet baseline (no text side) on the synthetic detection dataset."""

from detectron2.config import LazyCall as L
from detectron2.modeling import FPN, RetinaNet

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet

from .retinanet_denseclip_tiny import dataloader, lr_multiplier, model, optimizer, train

model._target_ = RetinaNet
del model.tau, model.aux_loss_weight
model.backbone._target_ = FPN
model.backbone.bottom_up = L(CLIPImageBackbone)(
    image_encoder=L(CLIPResNet)(
        layers=[1, 1, 1, 1], width=16, input_resolution=128, with_attention_pool=False
    ),
    out_features=["res3", "res4", "res5"],
)
model.backbone.top_block.in_channels = 16 * 32
train.output_dir = "./output/synthetic/retinanet_clip_tiny"
