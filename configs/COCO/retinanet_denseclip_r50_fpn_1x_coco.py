"""DenseCLIP RN50 + RetinaNet on COCO (paper Table 3: 37.8 box AP; 285 GFLOPs, 60 M parameters).

The official recipe (retinanet_denseclip_r50_fpn_1x_coco): 1333x800 with flip, batch 16 (2 per
GPU x 8 GPUs), AdamW lr 1e-4 and weight decay 1e-4 (CLIP image encoder x0.1, text encoder
frozen), gradient clipping to a global L2 norm of 0.1, 12 epochs with the learning rate divided
by 10 after epochs 8 and 11, 500 linear warm-up iterations from 0.001x. Auxiliary pixel-text
loss (box-shaped targets, BCE) with weight 1. mmdet 2.17's inference.
"""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from denseclip.solver import AdamWWithGradClip

from ..common.data.coco_detection import dataloader
from ..common.models.mmdet_inference import use_mmdet_inference
from ..common.models.retinanet_denseclip import model
from ..common.optim import AdamW as optimizer
from ..common.train import train

use_mmdet_inference(model)

optimizer._target_ = AdamWWithGradClip
optimizer.lr = 1e-4
optimizer.max_norm = 0.1  # mmcv grad_clip=dict(max_norm=0.1, norm_type=2): one global norm
optimizer.norm_type = 2.0

# 1 epoch = 117266 train2017 images with annotations (the others are skipped, as in mmdet)
# / 16 per batch = 7330 iterations; 12 epochs, steps after epochs 8 and 11.
EPOCH = 7330
train.max_iter = 12 * EPOCH
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(
        values=[1.0, 0.1, 0.01], milestones=[8 * EPOCH, 11 * EPOCH], num_updates=train.max_iter
    ),
    warmup_length=500 / train.max_iter,
    warmup_method="linear",
    warmup_factor=0.001,
)

train.checkpointer.period = EPOCH
train.eval_period = EPOCH
train.log_period = 50
train.output_dir = "./output/retinanet_denseclip_r50_fpn_1x_coco"
