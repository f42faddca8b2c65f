"""DenseCLIP ViT-B/16 + Semantic FPN on ADE20K-150 (paper Table 1: 50.6 mIoU SS, 51.3 MS).

640x640 crops (scale (2048, 640)), slide inference 640/426, drop path 0.1. The score map
joins the stride-16 level (official score_concat_index=2), where the patch tokens live.
"""

from detectron2.config import LazyCall as L

from denseclip.clip import CLIPVisionTransformer

from .denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

_encoder = model.backbone.bottom_up
_encoder.image_encoder = L(CLIPVisionTransformer)(
    input_resolution=640,
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    output_dim=512,
    drop_path_rate=0.1,
    out_indices=(3, 5, 7, 11),
    norm="SyncBN",
)
_encoder.prompts.text_encoder.embed_dim = 512
_encoder.context_decoder.visual_dim = 512
model.crop_size = (640, 640)
model.stride = (426, 426)

dataloader.train.mapper.augmentations.crop_size = 640
dataloader.train.mapper.augmentations.scale = (2048, 640)
dataloader.test.mapper.augmentations.scale = (2048, 640)

train.output_dir = "./output/denseclip_fpn_vit-b_640x640_80k"
