"""Table 2 row 4: + pre-model prompting (42.9 mIoU, 368 G, 116.9 M).

A 6-layer, width-256 Transformer decoder turns 8 learnable queries and [z̄, z] into the 8
contexts of the text encoder (paper Eq. 4); the text encoder runs for every image, so its
FLOPs and parameters count at inference. These sizes are our choice: the paper gives none, and
they give its 116.9 M parameters.
"""

from ...common.models.prompting import set_prompting
from ..denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

set_prompting(model.backbone.bottom_up, "pre")

train.output_dir = "./output/ablations/denseclip_fpn_res50_pre_model_512x512_80k"
