"""CLIP ViT-B/16 image encoder at 640² with the 4-level pyramid (the official ADE20K ViT setup),
and the 640² data pipeline that goes with it."""

from detectron2.config import LazyCall as L

from denseclip.clip import CLIPVisionTransformer

vit_b16 = L(CLIPVisionTransformer)(
    input_resolution=640,
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    output_dim=512,
    out_indices=(3, 5, 7, 11),
    norm="SyncBN",
    use_act_checkpoint=False,
)


def use_640_crops(model, dataloader):
    """Slide inference 640/426 and training / test scale (2048, 640) with 640² crops."""
    model.crop_size = (640, 640)
    model.stride = (426, 426)
    dataloader.train.mapper.augmentations.crop_size = 640
    dataloader.train.mapper.augmentations.scale = (2048, 640)
    dataloader.test.mapper.augmentations.scale = (2048, 640)
