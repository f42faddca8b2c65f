"""COCO 2017 instance segmentation with ViTDet's large-scale jitter: ``coco_detection_lsj.py``
with the instance masks, from which the boxes of cropped instances are recomputed."""

from .coco_detection_lsj import dataloader

dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.recompute_boxes = True
