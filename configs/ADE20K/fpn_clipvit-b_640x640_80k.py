"""CLIP ViT-B/16 + Semantic FPN baseline on ADE20K-150 (paper Table 1: 49.4 mIoU SS, 50.3 MS)."""

from ..common.models.clip_vit import use_640_crops
from ..common.models.clip_vit import vit_b16 as _vit_b16
from .fpn_clipres50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder = _vit_b16
# the baseline has no ln_post / proj (official get_embeddings=False)
model.backbone.bottom_up.image_encoder.with_embeddings = False
use_640_crops(model, dataloader)

train.output_dir = "./output/fpn_clipvit-b_640x640_80k"
