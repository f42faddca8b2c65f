"""DenseCLIP RN101 + Semantic FPN on ADE20K-150 (paper Table 1: 45.1 mIoU SS, 46.5 MS).

Same recipe as RN50; RN101's joint embedding space has 512 channels.
"""

from .denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

_encoder = model.backbone.bottom_up
_encoder.image_encoder.layers = [3, 4, 23, 3]
_encoder.image_encoder.output_dim = 512
_encoder.prompts.text_encoder.embed_dim = 512
_encoder.context_decoder.visual_dim = 512

train.output_dir = "./output/denseclip_fpn_res101_512x512_80k"
