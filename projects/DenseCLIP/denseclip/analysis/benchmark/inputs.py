"""Random inputs of the benchmark: images for inference, images with labels for training."""

from typing import Dict, List

import torch

from detectron2.structures import Boxes, Instances, PolygonMasks


def random_inputs(size: int, count: int = 1) -> List[Dict]:
    """``count`` model inputs with random size×size images (the same ones in every process)."""
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=generator) * 255} for _ in range(count)]


def is_detector(cfg) -> bool:
    """A RetinaNet / R-CNN config (else a semantic segmentation one, with ``sem_seg_head``)."""
    return "sem_seg_head" not in cfg.model


def num_classes(cfg) -> int:
    model = cfg.model
    if not is_detector(cfg):
        return model.sem_seg_head.num_classes
    return model.roi_heads.num_classes if "roi_heads" in model else model.num_classes


def _random_instances(size: int, classes: int, with_masks: bool, generator) -> Instances:
    """Two random boxes (between a quarter and half of the image) and their box masks."""
    corners = torch.rand(2, 2, generator=generator) * size / 2
    boxes = torch.cat(
        [corners, corners + size / 4 + torch.rand(2, 2, generator=generator) * size / 4], 1
    )
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(boxes)
    instances.gt_classes = torch.randint(classes, (2,), generator=generator)
    if with_masks:
        instances.gt_masks = PolygonMasks(
            [[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in boxes.tolist()]
        )
    return instances


def training_inputs(cfg, size: int, count: int) -> List[Dict]:
    """``count`` training inputs of random size×size images with random labels: a label map for
    segmentation, boxes (and masks for Mask R-CNN) for detection."""
    generator = torch.Generator().manual_seed(1)
    batch = random_inputs(size, count)
    classes = num_classes(cfg)
    with_masks = "mask_head" in cfg.model.get("roi_heads", {})
    for item in batch:
        if is_detector(cfg):
            item["instances"] = _random_instances(size, classes, with_masks, generator)
        else:
            item["sem_seg"] = torch.randint(classes, (size, size), generator=generator)
    return batch
