"""A tiny DenseCLIP ViT Mask R-CNN (windowed attention, simple feature pyramid) that trains on
the built-in synthetic detection dataset on 2 CPU cores.

mask_rcnn_denseclip_tiny.py (data with masks, narrow heads, anchors, prompts, schedule, but
detectron2's inference, as the COCO ViT-B/16 configs) with the tiny CLIP ViT of
retinanet_denseclip_vit_tiny.py (``clip_vitdet.tiny_vit``) and a simple feature pyramid P2–P6 of
64 channels from its stride-16 map (scales 4, 2, 1, 1/2 and max-pooled P6, as ViTDet's Mask
R-CNN). Batches are padded to multiples of 32 only, so any image size trains without a config
edit.
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from denseclip.data import SYNTHETIC_DET_CLASSES

from ..common.models.clip_vitdet import tiny_vit as _tiny_vit
from ..common.models.clip_vitdet import use_clip_vitdet
from ..common.models.denseclip_sizes import use_tiny_mask_rcnn
from ..common.models.mask_rcnn_denseclip import model
from .mask_rcnn_denseclip_tiny import dataloader, lr_multiplier, optimizer, train

use_tiny_mask_rcnn(model, SYNTHETIC_DET_CLASSES)
use_clip_vitdet(
    model,
    _tiny_vit,
    scale_factors=(4.0, 2.0, 1.0, 0.5),
    top_block=L(LastLevelMaxPool)(),
    out_channels=64,
    square_pad=0,
)
train.output_dir = "./output/synthetic/mask_rcnn_denseclip_vit_tiny"
