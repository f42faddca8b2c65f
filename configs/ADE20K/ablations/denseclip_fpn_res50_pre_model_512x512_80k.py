"""Table 2 row 4: + pre-model prompting (42.9 mIoU, 368 G, 116.9 M).

A 6-layer, width-256 Transformer decoder turns 8 learnable queries and [z̄, z] into the 8
contexts of the text encoder (paper Eq. 4); the text encoder runs for every image, so its
FLOPs and parameters count at inference. These sizes are our choice: the paper gives none, and
they give its 116.9 M parameters.
"""

from detectron2.config import LazyCall as L

from denseclip.pre_prompting import PreModelPrompting

from ..denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.context_decoder = None
model.backbone.bottom_up.pre_model_prompting = L(PreModelPrompting)(
    visual_dim=1024,
    context_width=512,  # the text encoder's token width
    num_contexts=8,  # context_length 13 - 5 class tokens
    width=256,
    num_heads=4,
    num_layers=6,
    dropout=0.1,
)

train.output_dir = "./output/ablations/denseclip_fpn_res50_pre_model_512x512_80k"
