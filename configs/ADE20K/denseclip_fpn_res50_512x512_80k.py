"""DenseCLIP RN50 + Semantic FPN on ADE20K-150 (paper Table 1: 43.5 mIoU SS, 44.7 MS).

80k iterations at batch 32 (4 per GPU x 8 GPUs), 512x512 crops, AdamW lr 1e-4 (image encoder
x0.1, text encoder frozen), poly decay with 1500 warm-up iterations, slide inference 512/341.
"""

from ..common.data.ade20k_sem_seg import dataloader
from ..common.models.denseclip_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import poly_with_warmup as lr_multiplier
from ..common.train import train

train.max_iter = 80000
train.checkpointer.period = 8000
train.eval_period = 8000
train.log_period = 50
train.output_dir = "./output/denseclip_fpn_res50_512x512_80k"
