"""configs/Synthetic/denseclip_fpn_tiny.py with language-domain prompting only (Table 2 row 3):
learnable contexts, no context decoder."""

from ..common.models.prompting import set_prompting
from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

set_prompting(model.backbone.bottom_up, "none")

train.output_dir = "./output/synthetic/denseclip_fpn_language_only_tiny"
