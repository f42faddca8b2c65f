"""COCO 2017 detection (detectron2's builtin ``coco_2017_{train,val}``) with the official mmdet
pipeline: mmdet's ``Resize(img_scale=(1333, 800), keep_ratio=True)`` (short side 800, long side
at most 1333, mmcv's rounding and OpenCV bilinear resize), horizontal flip; the same resize at
test time. RGB images (normalisation is in the model), batch 16. Boxes only;
``coco_instance.py`` adds the masks."""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.model_zoo import get_config

from denseclip.data import DenseCLIPDatasetMapper, KeepRatioResize

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper._target_ = DenseCLIPDatasetMapper  # names unreadable files, reads 16 bits
dataloader.test.mapper._target_ = DenseCLIPDatasetMapper
dataloader.train.mapper.augmentations = [
    L(KeepRatioResize)(scale=(1333, 800), backend="opencv"),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.test.mapper.augmentations = [L(KeepRatioResize)(scale=(1333, 800), backend="opencv")]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 16  # 2 images per GPU x 8 GPUs
