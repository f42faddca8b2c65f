"""DenseCLIP with an ImageNet Swin-S (paper Table 5) + Semantic FPN on ADE20K-150.

As the Swin-T config with Swin-S's 18 blocks in stage 3 (drop path 0.3, as Swin's ADE20K
recipe); the paper's Swin-S rows use UperNet (48.3 / 49.7 mIoU with DenseCLIP, 47.6 / 49.5
without). Weights: microsoft/Swin-Transformer's swin_small_patch4_window7_224.pth.
"""

from detectron2.config import LazyConfig

_swin_t = LazyConfig.load_rel("denseclip_fpn_swin-t_imagenet_512x512_80k.py")
dataloader, lr_multiplier, model, optimizer, train = (
    _swin_t[key] for key in ("dataloader", "lr_multiplier", "model", "optimizer", "train")
)

model.backbone.bottom_up.image_encoder.backbone.depths = (2, 2, 18, 2)

train.output_dir = "./output/denseclip_fpn_swin-s_imagenet_512x512_80k"
