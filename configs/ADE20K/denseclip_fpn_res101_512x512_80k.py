"""DenseCLIP RN101 + Semantic FPN on ADE20K-150 (paper Table 1: 45.1 mIoU SS, 46.5 MS).

Same recipe as RN50; RN101's joint embedding space has 512 channels.
"""

from ..common.models.denseclip_sizes import use_rn101
from .denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

use_rn101(model.backbone.bottom_up)

train.output_dir = "./output/denseclip_fpn_res101_512x512_80k"
