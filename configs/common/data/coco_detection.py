"""COCO 2017 detection (detectron2's builtin ``coco_2017_{train,val}``) with the official mmdet
pipeline: resize to 1333x800 keeping the aspect ratio (short side 800, long side at most 1333),
horizontal flip; the same resize at test time. RGB images (normalisation is in the model),
batch 16. Boxes only; ``coco_instance.py`` adds the masks."""

from detectron2.config import LazyCall as L
from detectron2.data import transforms as T
from detectron2.model_zoo import get_config

dataloader = get_config("common/data/coco.py").dataloader
dataloader.train.mapper.augmentations = [
    L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
    L(T.RandomFlip)(horizontal=True),
]
dataloader.train.mapper.image_format = "RGB"
dataloader.train.mapper.use_instance_mask = False
dataloader.train.total_batch_size = 16  # 2 images per GPU x 8 GPUs
