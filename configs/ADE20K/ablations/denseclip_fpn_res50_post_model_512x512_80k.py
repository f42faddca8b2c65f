"""Table 2 row 5: + post-model prompting (43.5 mIoU, 269 G, 50.2 M), i.e. the default DenseCLIP
RN50 (configs/ADE20K/denseclip_fpn_res50_512x512_80k.py) under the ablation's name."""

from ...common.models.prompting import set_prompting
from ..denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

set_prompting(model.backbone.bottom_up, "post")  # already the default; the switch made explicit

train.output_dir = "./output/ablations/denseclip_fpn_res50_post_model_512x512_80k"
