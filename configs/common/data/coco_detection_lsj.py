"""COCO 2017 detection with ViTDet's large-scale jitter (detectron2 projects/ViTDet
``coco_loader_lsj.py``): horizontal flip, resize to 0.1–2.0 × 1024² keeping the aspect ratio,
a random 1024² crop (no padding here: the model pads the batch to 1024²); at test time the
longer side resized to 1024. detectron2's mapper as ``DenseCLIPDatasetMapper`` (which names
unreadable files and reads 16-bit images). RGB images, batch 64. Boxes only;
``coco_instance_lsj.py`` adds the masks (and recomputes the cropped boxes from them, as
ViTDet)."""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.model_zoo import get_config

from denseclip.data import DenseCLIPDatasetMapper

IMAGE_SIZE = 1024

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper._target_ = DenseCLIPDatasetMapper
dataloader.test.mapper._target_ = DenseCLIPDatasetMapper
dataloader.train.mapper.augmentations = [
    L(T.RandomFlip)(horizontal=True),  # flip first
    L(T.ResizeScale)(
        min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE
    ),
    L(T.FixedSizeCrop)(crop_size=(IMAGE_SIZE, IMAGE_SIZE), pad=False),
]
dataloader.test.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=IMAGE_SIZE),
]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 64
