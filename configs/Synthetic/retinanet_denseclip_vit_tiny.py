"""A tiny DenseCLIP ViT RetinaNet (windowed attention, simple feature pyramid) that trains on the
built-in synthetic detection dataset on 2 CPU cores.

retinanet_denseclip_tiny.py (data, heads, anchors, prompts, schedule) with the CLIP ResNet and
FPN replaced, and detectron2's inference, as in the COCO ViT-B/16 config
(retinanet_denseclip_vit-b_sfp_100ep_coco.py): a 4-block, width-64 CLIP ViT
(``clip_vitdet.tiny_vit``) whose blocks 0 and 2 attend in 4×4-patch windows, and a simple
feature pyramid P3–P7 of 64 channels from its stride-16 map. Batches are padded to multiples of
32 only (no square padding), so any image size trains without a config edit.
"""

from detectron2.config import LazyCall as L

from denseclip.data import SYNTHETIC_DET_CLASSES
from denseclip.pyramids import LastLevelP6P7NoReLU

from ..common.models.clip_vitdet import tiny_vit as _tiny_vit
from ..common.models.clip_vitdet import use_clip_vitdet
from ..common.models.denseclip_sizes import use_tiny_retinanet
from ..common.models.retinanet_denseclip import model
from .retinanet_denseclip_tiny import dataloader, lr_multiplier, optimizer, train

use_tiny_retinanet(model, SYNTHETIC_DET_CLASSES)
use_clip_vitdet(
    model,
    _tiny_vit,
    scale_factors=(2.0, 1.0, 0.5),
    top_block=L(LastLevelP6P7NoReLU)(in_channels=64, out_channels=64, in_feature="p5"),
    out_channels=64,
    square_pad=0,
)
train.output_dir = "./output/synthetic/retinanet_denseclip_vit_tiny"
