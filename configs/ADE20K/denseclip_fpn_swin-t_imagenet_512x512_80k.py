"""DenseCLIP with an ImageNet Swin-T (paper Table 5, any backbone) + Semantic FPN, ADE20K-150.

The paper pairs Swin-T with UperNet (45.4 / 46.5 mIoU with DenseCLIP, 44.5 / 45.8 without);
detectron2 has no UperNet, so this is Swin-T + Semantic FPN, like the ResNet rows of Table 5.
detectron2's SwinTransformer (the official Swin detection/segmentation backbone: a LayerNorm on
each output, any input size) with the ADE20K Swin-T drop path of 0.3, under a randomly
initialised CLIP-style attention pool on its stride-32 stage (768 channels, 12 heads of 64)
into the joint space of CLIP RN50's frozen text encoder (C = 1024). The DenseCLIP recipe of the
ResNet rows: AdamW 1e-4, backbone at 0.1x, 80k iterations; Swin's relative position bias tables
without weight decay. Weights: microsoft/Swin-Transformer's swin_tiny_patch4_window7_224.pth
combined with CLIP RN50's text encoder by tools/combine_imagenet_clip.py.
"""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import SwinTransformer

from .denseclip_fpn_r50_imagenet_512x512_80k import (
    dataloader,
    lr_multiplier,
    model,
    optimizer,
    train,
)

_encoder = model.backbone.bottom_up.image_encoder
_encoder.backbone = L(SwinTransformer)(
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    drop_path_rate=0.3,
    out_indices=(0, 1, 2, 3),  # p0..p3, exposed as res2..res5 (strides 4..32)
)
_encoder.heads = 12
optimizer.params.custom_keys["relative_position_bias_table"] = {
    "lr_mult": 0.1,  # inside the backbone: the keys are exclusive, longest first (mmcv)
    "decay_mult": 0.0,
}

train.output_dir = "./output/denseclip_fpn_swin-t_imagenet_512x512_80k"
