"""configs/Synthetic/denseclip_fpn_tiny.py with pre-model prompting (paper Eq. 4) instead of the
context decoder: a 1-layer, width-32 decoder makes the 8 contexts of the tiny text encoder."""

from detectron2.config import LazyCall as L

from denseclip.pre_prompting import PreModelPrompting

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

_encoder = model.backbone.bottom_up
_encoder.context_decoder = None
_encoder.pre_model_prompting = L(PreModelPrompting)(
    visual_dim=64,  # the tiny image encoder's output_dim
    context_width=64,  # the tiny text encoder's width
    num_contexts=8,  # context_length 13 - 5 class tokens
    width=32,
    num_heads=4,
    num_layers=1,
)

train.output_dir = "./output/synthetic/denseclip_fpn_pre_model_tiny"
