"""CLIP RN50 + Semantic FPN baseline on ADE20K-150 (paper Table 1: 39.6 mIoU SS, 41.6 MS).

DenseCLIP's recipe without the text side: no attention pool, no score maps, no auxiliary loss.
"""

from ..common.data.ade20k_sem_seg import dataloader
from ..common.models.clip_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import poly_with_warmup as lr_multiplier
from ..common.train import train

train.max_iter = 80000
train.checkpointer.period = 8000
train.eval_period = 8000
train.log_period = 50
train.output_dir = "./output/fpn_clipres50_512x512_80k"
