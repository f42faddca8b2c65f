"""`make demo`: configs/Synthetic/denseclip_fpn_tiny.py made to segment the synthetic shapes.

The ``synthetic_demo`` dataset (1024 images of 3–8 shapes that never overlap), deeper stages
(res3 2 blocks, res4 4, res5 2: a receptive field that covers a whole shape), a 3× higher
learning rate, 1500 iterations (the shapes are learnt late, while the learning rate decays), and
the network at 96² to keep the demo at about 6 minutes on 2 CPU cores. Why each change, and the
alternatives measured: docs/development.md ("The demo").
"""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

model.backbone.bottom_up.image_encoder.layers = [1, 2, 4, 2]

dataloader.train.dataset.names = "synthetic_demo_train"
dataloader.test.dataset.names = "synthetic_demo_val"
# the network sees the 128² images at 96² (0.7× the time per iteration); predictions are resized
# back to 128² for the evaluation and the pictures
dataloader.train.mapper.augmentations = [L(T.Resize)(shape=(96, 96)), L(T.RandomFlip)()]
dataloader.test.mapper.augmentations = [L(T.Resize)(shape=(96, 96))]
model.crop_size = (96, 96)

optimizer.lr = 3e-3

train.max_iter = 1500
train.eval_period = 1500

train.output_dir = "./output/synthetic/denseclip_fpn_demo"
