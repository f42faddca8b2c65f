"""ViTDet's ViT-B recipe (detectron2 projects/ViTDet ``mask_rcnn_vitdet_b_100ep.py``) for the
CLIP ViT-B/16 detectors, with the data of ``data/coco_{detection,instance}_lsj.py``.

100 epochs at batch 64, AdamW (lr 1e-4, weight decay 0.1, none on normalization layers),
layer-wise learning-rate decay 0.7 over the 12 blocks (the CLIP image encoder's first layers
learn slowest; everything after the last block at the full rate: the pyramid, the heads, and
DenseCLIP's contexts, context decoder and γ), the learning rate ÷10 at 88.9 and 96.3 epochs
after 250 warm-up iterations from 0.001×, mixed precision and fp16 gradient compression.
Besides ViTDet's ``pos_embed``, the CLIP class embedding and DenseCLIP's contexts and γ are
free of weight decay: like a positional embedding, each is one vector that a decay of 0.1
would pull towards zero whatever the task needs (γ scales the context decoder's update).
"""

import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from denseclip.solver import layer_decay_param_groups

from .train import train

_NO_DECAY = {"weight_decay": 0.0}

optimizer = L(torch.optim.AdamW)(
    params=L(layer_decay_param_groups)(
        base_lr="${..lr}",
        weight_decay="${..weight_decay}",
        lr_decay_rate=0.7,
        num_layers=12,
        weight_decay_norm=0.0,
        overrides={
            "positional_embedding": _NO_DECAY,
            "class_embedding": _NO_DECAY,
            "contexts": _NO_DECAY,
            "gamma": _NO_DECAY,
        },
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.1,
)

# 100 ep = 184375 iters * 64 images/iter / 118000 images/ep
train.max_iter = 184375
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01],
        milestones=[163889, 177546],
        num_updates=train.max_iter,
    ),
    warmup_length=250 / train.max_iter,
    warmup_factor=0.001,
)

train.amp.enabled = True
train.ddp.fp16_compression = True
