"""COCO 2017 instance segmentation: ``coco_detection.py`` with the instance masks, as mmdet's
``LoadAnnotations(with_mask=True)`` gives them: polygons rasterised at the original image size,
then resized with the image and flipped as bitmaps (``masks_at_original_size=False`` with
``instance_mask_format=polygon``: detectron2's polygons, rasterised per RoI)."""

from .coco_detection import dataloader

dataloader.train.mapper.use_instance_mask = True
dataloader.train.mapper.instance_mask_format = "bitmask"
