"""A tiny DenseCLIP + Semantic FPN that trains on the built-in synthetic dataset on 2 CPU cores.

Same modules as the ADE20K configs at toy widths (CLIP ResNet width 16, a 2-layer text encoder,
a 1-layer context decoder) trained from scratch, with the official (mmseg) loss reduction. The
synthetic dataset is written on first use to $DENSECLIP_DATASETS/synthetic_seg.
"""

from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.evaluation import SemSegEvaluator

from denseclip.data import DenseCLIPDatasetMapper
from denseclip.data.synthetic import SYNTHETIC_CLASSES, register_synthetic_segmentation

from ..common.models.denseclip_sizes import use_tiny
from ..common.models.denseclip_fpn import model
from ..common.optim import AdamW as optimizer
from ..common.schedule import poly_with_warmup as lr_multiplier
from ..common.train import train

register_synthetic_segmentation()

use_tiny(model.backbone.bottom_up, SYNTHETIC_CLASSES)
model.backbone.out_channels = 64
model.sem_seg_head.update(num_classes=len(SYNTHETIC_CLASSES), conv_dims=32, norm="BN")
model.test_mode = "whole"
model.crop_size = (128, 128)  # training batches are padded to at least this size
model.stride = (85, 85)  # slide inference (model.test_mode=slide): 2/3 of the crop, as ADE20K

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="synthetic_seg_train", filter_empty=False),
        mapper=L(DenseCLIPDatasetMapper)(
            is_train=True, augmentations=[L(T.RandomFlip)()], image_format="RGB"
        ),
        total_batch_size=8,
        num_workers=0,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="synthetic_seg_val", filter_empty=False),
        mapper=L(DenseCLIPDatasetMapper)(is_train=False, augmentations=[], image_format="RGB"),
        num_workers=0,
    ),
    evaluator=L(SemSegEvaluator)(dataset_name="${..test.dataset.names}"),
)

# From scratch: a higher learning rate, the image encoder at the full rate, short warm-up.
optimizer.lr = 1e-3
optimizer.params.custom_keys["bottom_up.image_encoder."] = {"lr_mult": 1.0}
lr_multiplier.warmup_iters = 50

train.max_iter = 1000
train.eval_period = 1000
train.checkpointer.period = 500
train.log_period = 20
train.output_dir = "./output/synthetic/denseclip_fpn_tiny"
train.seed = 0
