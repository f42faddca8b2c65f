"""configs/Synthetic/denseclip_fpn_imagenet_tiny.py with a toy detectron2 Swin Transformer as the
image encoder (any backbone, paper §3.4): embedding width 16, two blocks per stage, 4×4
windows (res2..res5: 16, 32, 64, 128 channels) under a randomly initialised attention pool into
the tiny text space (64)."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import SwinTransformer

from .denseclip_fpn_imagenet_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.backbone = L(SwinTransformer)(
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 4, 8),
    window_size=4,
    drop_path_rate=0.1,
    out_indices=(0, 1, 2, 3),
)

train.output_dir = "./output/synthetic/denseclip_fpn_swin_tiny"
