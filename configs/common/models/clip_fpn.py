"""The CLIP RN50 + Semantic FPN baseline: the same model without the text side."""

from detectron2.config import LazyCall as L

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet

from .denseclip_fpn import model

model.backbone.bottom_up = L(CLIPImageBackbone)(
    image_encoder=L(CLIPResNet)(
        layers=[3, 4, 6, 3],
        width=64,
        input_resolution=512,
        with_attention_pool=False,
        use_act_checkpoint=False,
    )
)
