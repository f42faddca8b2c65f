"""COCO 2017 detection (detectron2's builtin ``coco_2017_{train,val}``) with the official mmdet
pipeline: mmdet's ``Resize(img_scale=(1333, 800), keep_ratio=True)`` (short side 800, long side
at most 1333, mmcv's rounding and OpenCV bilinear resize), horizontal flip; the same resize at
test time. ``augmentations.resize_backend=pil`` (train and test) switches to detectron2's PIL
resize. Training annotations are read as mmdet reads them (``MMDetDatasetMapper``: boxes mmdet
skips are dropped). RGB images (normalisation is in the model), batch 16. Boxes only;
``coco_instance.py`` adds the masks."""

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from denseclip.data import (
    DenseCLIPDatasetMapper,
    MMDetDatasetMapper,
    coco_test_augmentations,
    coco_train_augmentations,
)

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper._target_ = MMDetDatasetMapper  # + names unreadable files, reads 16 bits
dataloader.test.mapper._target_ = DenseCLIPDatasetMapper
dataloader.train.mapper.augmentations = L(coco_train_augmentations)(scale=(1333, 800))
dataloader.test.mapper.augmentations = L(coco_test_augmentations)(scale=(1333, 800))
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 16  # 2 images per GPU x 8 GPUs
