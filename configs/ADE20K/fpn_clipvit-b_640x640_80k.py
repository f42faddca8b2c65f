"""CLIP ViT-B/16 + Semantic FPN baseline on ADE20K-150 (paper Table 1: 49.4 mIoU SS, 50.3 MS)."""

from detectron2.config import LazyCall as L

from denseclip.clip import CLIPVisionTransformer

from .fpn_clipres50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder = L(CLIPVisionTransformer)(
    input_resolution=640,
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    output_dim=512,
    out_indices=(3, 5, 7, 11),
    norm="SyncBN",
    with_embeddings=False,  # the baseline has no ln_post / proj (official get_embeddings=False)
)
model.crop_size = (640, 640)
model.stride = (426, 426)

dataloader.train.mapper.augmentations.crop_size = 640
dataloader.train.mapper.augmentations.scale = (2048, 640)
dataloader.test.mapper.augmentations.scale = (2048, 640)

train.output_dir = "./output/fpn_clipvit-b_640x640_80k"
