"""AdamW with the official parameter-wise rules (mmcv ``paramwise_cfg.custom_keys``)."""

import torch

from detectron2.config import LazyCall as L

from denseclip.solver import param_groups_by_keys

AdamW = L(torch.optim.AdamW)(
    params=L(param_groups_by_keys)(
        base_lr="${..lr}",
        weight_decay="${..weight_decay}",
        custom_keys={
            # official 'backbone': the CLIP image encoder trains at 0.1x the learning rate
            "bottom_up.image_encoder.": {"lr_mult": 0.1},
            # official 'norm' key only matches the context decoder layers' norm1..3 (every other
            # norm layer is inside the 'backbone' or named bn/ln); the text encoder is frozen
            "norm1": {"decay_mult": 0.0},
            "norm2": {"decay_mult": 0.0},
            "norm3": {"decay_mult": 0.0},
        },
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=1e-4,
)
