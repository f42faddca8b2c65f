"""A tiny DenseCLIP RetinaNet that trains on the built-in synthetic detection dataset on 2 CPU
cores.

The COCO model and recipe (retinanet_denseclip_r50_fpn_1x_coco.py, mmdet's inference) at toy
widths (``use_tiny_retinanet``: CLIP ResNet width 16, a 2-layer text encoder, a 1-layer context
decoder, 64-channel FPN and head, anchors half the COCO sizes for 20–50 px shapes) trained from scratch on 128x128 images (no resize), at
a higher learning rate with the image encoder at the full rate and a short warm-up. The
dataset (circles, squares, triangles; COCO layout) is written on first use to
$DENSECLIP_DATASETS/synthetic_det.
"""

from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.data import transforms as T
from detectron2.evaluation import COCOEvaluator

from denseclip.data import DenseCLIPDatasetMapper
from denseclip.data.synthetic import SYNTHETIC_DET_CLASSES, register_synthetic_detection

from ..COCO.retinanet_denseclip_r50_fpn_1x_coco import lr_multiplier, optimizer
from ..common.models.denseclip_sizes import use_tiny_retinanet
from ..common.models.mmdet_inference import use_mmdet_inference
from ..common.models.retinanet_denseclip import model
from ..common.train import train

register_synthetic_detection()

use_tiny_retinanet(model, SYNTHETIC_DET_CLASSES)
use_mmdet_inference(model)

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="synthetic_det_train"),
        mapper=L(DenseCLIPDatasetMapper)(
            is_train=True,
            augmentations=[L(T.RandomFlip)(horizontal=True)],
            image_format="RGB",
            use_instance_mask=False,
        ),
        total_batch_size=8,
        num_workers=0,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="synthetic_det_val", filter_empty=False),
        mapper=L(DenseCLIPDatasetMapper)(is_train=False, augmentations=[], image_format="RGB"),
        num_workers=0,
    ),
    evaluator=L(COCOEvaluator)(dataset_name="${..test.dataset.names}"),
)

# From scratch: a higher learning rate, the image encoder at the full rate, a short warm-up.
optimizer.lr = 1e-3
optimizer.params.custom_keys["bottom_up.image_encoder."] = {"lr_mult": 1.0}
train.max_iter = 1200
lr_multiplier.warmup_length = 50 / train.max_iter
train.eval_period = 1200
train.checkpointer.period = 600
train.log_period = 20
train.output_dir = "./output/synthetic/retinanet_denseclip_tiny"
train.seed = 0
