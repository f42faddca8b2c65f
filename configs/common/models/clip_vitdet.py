"""CLIP ViT-B/16 for detection, built the way detectron2's ViTDet builds a plain-ViT detector.

``vitdet_b16`` is the CLIP image encoder (OpenAI's weights and semantics, the positional
embedding stored at CLIP's 14×14 and resized bicubically to the image's grid) with ViTDet
ViT-B's choices: 14×14-patch windows in every block but 2, 5, 8 and 11, which attend globally,
and drop path 0.1. ``use_clip_vitdet`` puts an encoder like it into a detector config whose
backbone is an FPN over a CLIP image backbone, and replaces the FPN by ViTDet's simple feature
pyramid from the single stride-16 map (LayerNorm, 256 channels, batches padded to 1024²).
"""

from detectron2.config import LazyCall as L

from denseclip.clip import CLIPViTDet
from denseclip.pyramids import SimpleFeaturePyramidWithSideOutputs

vitdet_b16 = L(CLIPViTDet)(
    input_resolution=224,  # CLIP's 14×14 grid: an OpenAI file loads as is
    patch_size=16,
    width=768,
    layers=12,
    heads=12,
    output_dim=512,
    window_size=14,
    window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10],  # global attention in 2, 5, 8, 11
    drop_path_rate=0.1,
    use_act_checkpoint=False,
)

#: The toy CLIP ViT of the Synthetic configs: 4 blocks of width 64, 16×16 patches (an 8×8 grid
#: on the 128² synthetic images), blocks 0 and 2 in 4×4-patch windows, 1 and 3 global.
tiny_vit = L(CLIPViTDet)(
    input_resolution=128,
    patch_size=16,
    width=64,
    layers=4,
    heads=4,
    output_dim=64,  # the tiny text encoder's joint space
    window_size=4,
    window_block_indexes=[0, 2],
    drop_path_rate=0.0,
)


def use_clip_vitdet(
    model, image_encoder, scale_factors, top_block, out_channels=256, square_pad=1024
):
    """Turns ``model``, a detector config whose backbone is an FPN over a CLIP image backbone
    (``model.backbone.bottom_up``: DenseCLIP or CLIP baseline), into its plain-ViT version:
    ``image_encoder`` (a ``CLIPViTDet`` node) gives the single map ``last_feat`` (with the K
    score channels for DenseCLIP), and ViTDet's ``SimpleFeaturePyramid`` makes the levels:
    ``scale_factors`` of the stride-16 map, then ``top_block``."""
    bottom_up = model.backbone.bottom_up
    bottom_up.image_encoder = image_encoder
    bottom_up.out_features = ["last_feat"]
    model.backbone = L(SimpleFeaturePyramidWithSideOutputs)(
        bottom_up=bottom_up,
        in_feature="last_feat",
        out_channels=out_channels,
        scale_factors=list(scale_factors),
        top_block=top_block,
        norm="LN",
        square_pad=square_pad,
    )
