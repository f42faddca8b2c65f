"""COCO 2017 instance segmentation: ``coco_detection.py`` with the instance masks (polygons)."""

from .coco_detection import dataloader

dataloader.train.mapper.use_instance_mask = True
