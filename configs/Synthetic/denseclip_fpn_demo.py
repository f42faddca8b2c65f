"""`make demo`: configs/Synthetic/denseclip_fpn_tiny.py made to segment the synthetic shapes.

Three changes, each needed (measured in DOCS of the demo): the ``synthetic_demo`` dataset (1024
training images whose 3–8 shapes never overlap, instead of 64 with 1–4 overlapping shapes),
deeper stages (res3 2 blocks, res4 4, res5 2: a receptive field that covers a whole shape, at
about 10 % more compute, most of which is at stride 4) and a 3× higher learning rate.
"""

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [1, 2, 4, 2]

dataloader.train.dataset.names = "synthetic_demo_train"
dataloader.test.dataset.names = "synthetic_demo_val"

optimizer.lr = 3e-3

train.output_dir = "./output/synthetic/denseclip_fpn_demo"
