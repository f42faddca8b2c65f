"""configs/Synthetic/denseclip_fpn_tiny.py with pre-model prompting (paper Eq. 4) instead of the
context decoder: a 1-layer, width-32 decoder makes the 8 contexts of the tiny text encoder."""

from ..common.models.prompting import set_prompting
from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

set_prompting(model.backbone.bottom_up, "pre", width=32, num_heads=4, num_layers=1)

train.output_dir = "./output/synthetic/denseclip_fpn_pre_model_tiny"
