"""DenseCLIP ViT-B/16 + Semantic FPN on ADE20K-150 (paper Table 1: 50.6 mIoU SS, 51.3 MS).

640x640 crops (scale (2048, 640)), slide inference 640/426, drop path 0.1. The score map
joins the stride-16 level (official score_concat_index=2), where the patch tokens live.
"""

from ..common.models.clip_vit import use_640_crops
from ..common.models.clip_vit import vit_b16 as _vit_b16
from .denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

_encoder = model.backbone.bottom_up
_encoder.image_encoder = _vit_b16
_encoder.image_encoder.drop_path_rate = 0.1
_encoder.prompts.text_encoder.embed_dim = 512
use_640_crops(model, dataloader)

train.output_dir = "./output/denseclip_fpn_vit-b_640x640_80k"
