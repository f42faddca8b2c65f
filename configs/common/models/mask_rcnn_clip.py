"""The CLIP RN50 + Mask R-CNN baseline (official mask_rcnn_clip_r50_fpn_1x_coco model): the
DenseCLIP Mask R-CNN without the text side — detectron2's stock GeneralizedRCNN and FPN over the
CLIP image encoder (no attention pool, no score maps, no auxiliary loss)."""

from detectron2.config import LazyCall as L
from detectron2.modeling import FPN, GeneralizedRCNN

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet

from .mask_rcnn_denseclip import model

model._target_ = GeneralizedRCNN
del model.tau, model.aux_loss_weight
model.backbone._target_ = FPN
model.backbone.bottom_up = L(CLIPImageBackbone)(
    image_encoder=L(CLIPResNet)(
        layers=[3, 4, 6, 3], width=64, input_resolution=1344, with_attention_pool=False
    )
)
