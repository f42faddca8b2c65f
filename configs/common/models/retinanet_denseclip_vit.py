"""DenseCLIP ViT-B/16 + RetinaNet: the RetinaNet of ``retinanet_denseclip.py`` (same head,
losses, COCO prompts, score maps / τ, auxiliary loss) over the plain CLIP ViT-B/16 of
``clip_vitdet.py``. The 80 score channels join the stride-16 map (768 + 80 channels) before
ViTDet's simple feature pyramid, which makes P3–P5 from it (scales 2, 1, 1/2) and P6, P7 from
P5 (the no-ReLU top block of the ResNet configs, reading P5 as ViTDet's pyramids do).
"""

from detectron2.config import LazyCall as L

from denseclip.pyramids import LastLevelP6P7NoReLU

from .clip_vitdet import use_clip_vitdet, vitdet_b16
from .retinanet_denseclip import model

model.backbone.bottom_up.prompts.text_encoder.embed_dim = 512  # ViT-B/16's joint space
use_clip_vitdet(
    model,
    vitdet_b16,
    scale_factors=(2.0, 1.0, 0.5),
    top_block=L(LastLevelP6P7NoReLU)(
        in_channels="${..out_channels}", out_channels="${..out_channels}", in_feature="p5"
    ),
)
