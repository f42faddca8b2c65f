"""`make demo`: configs/Synthetic/denseclip_fpn_tiny.py made to segment the synthetic shapes.

Three changes, each needed: the ``synthetic_demo`` dataset (1024 training images whose 3–8 shapes
never overlap, instead of 64 with 1–4 overlapping shapes), deeper stages (res3 2 blocks, res4 4,
res5 2: a receptive field that covers a whole shape, at 16 % more compute per iteration, most of
it at stride 4) and a 3× higher learning rate. 1000 iterations of batch 8 reach 84.8 val mIoU
with train.seed=0 (every class above 64 IoU) but 67.2 with train.seed=1: the shapes are learnt
late, while the learning rate decays, and not reliably within this budget. Cheaper schedules
stay far below (README's demo section).
"""

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [1, 2, 4, 2]

dataloader.train.dataset.names = "synthetic_demo_train"
dataloader.test.dataset.names = "synthetic_demo_val"

optimizer.lr = 3e-3

train.output_dir = "./output/synthetic/denseclip_fpn_demo"
