"""detectron2's ``DatasetMapper`` reading files with :mod:`denseclip.data.image_io`, and its
variant that reads COCO instance annotations as mmdet 2.17 does."""

import copy
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
import torch

from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from .image_io import read_image, read_label

__all__ = ["DenseCLIPDatasetMapper", "MMDetDatasetMapper", "mmdet_keeps_annotation"]


class DenseCLIPDatasetMapper(DatasetMapper):
    """:class:`detectron2.data.DatasetMapper` (same arguments, same outputs) that reads the image
    with :func:`~denseclip.data.image_io.read_image` (16-bit greyscale scaled instead of
    clipped), applies mmseg's ``reduce_zero_label`` to the labels of dataset dicts that ask for
    it (``"reduce_zero_label": True``, ADEChallengeData2016 as extracted) and names the file in
    every read or size error.

    detectron2's mapper reads inside ``__call__`` with no hook for the reader ("write your own
    image loading"), so ``__call__`` is written here on detectron2's own pieces
    (``check_image_size``, ``AugInput``, the augmentations, ``_transform_annotations``);
    ``tests/test_image_files.py`` checks that it maps 8-bit files exactly as detectron2 does.
    """

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        file_name = dataset_dict["file_name"]
        image = read_image(file_name, format=self.image_format)
        try:
            utils.check_image_size(dataset_dict, image)
        except utils.SizeMismatchError as error:
            raise utils.SizeMismatchError(f"{file_name} (EXIF orientation applied): {error}")
        labels_file = dataset_dict.pop("sem_seg_file_name", None)
        reduce = dataset_dict.pop("reduce_zero_label", False)
        labels = read_label(labels_file, reduce) if labels_file is not None else None

        aug_input = T.AugInput(image, sem_seg=labels)
        transforms = self.augmentations(aug_input)
        image, labels = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if labels is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(labels.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )
        if not self.is_train:
            dataset_dict.pop("annotations", None)
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict


def mmdet_keeps_annotation(annotation: Dict, height: int, width: int) -> bool:
    """Whether mmdet's ``CocoDataset._parse_ann_info`` keeps an annotation: its box overlaps the
    image, is at least 1 pixel wide and high, and its ``area`` (when the record has one) is
    positive. detectron2's COCO loader keeps them all (and drops the ``area`` key)."""
    x, y, w, h = BoxMode.convert(annotation["bbox"], annotation["bbox_mode"], BoxMode.XYWH_ABS)
    overlap_w = max(0, min(x + w, width) - max(x, 0))
    overlap_h = max(0, min(y + h, height) - max(y, 0))
    return overlap_w * overlap_h > 0 and w >= 1 and h >= 1 and annotation.get("area", 1) > 0


class MMDetDatasetMapper(DenseCLIPDatasetMapper):
    """:class:`DenseCLIPDatasetMapper` reading instance annotations as mmdet 2.17 does; each
    difference from detectron2 is a switch (both on by default: the official behaviour).

    Args:
        drop_small_boxes: drop the annotations that mmdet's COCO dataset skips
            (:func:`mmdet_keeps_annotation`); detectron2 trains on them.
        masks_at_original_size: rasterise polygon masks at the original image size before the
            augmentations, as mmdet's ``LoadAnnotations(poly2mask=True)`` does; the bitmaps are
            then resized with the image (nearest neighbour, OpenCV with the "opencv" resize
            backend, as mmcv's ``imrescale``) and flipped, and reach the model as ``BitMasks``,
            whose RoI targets are mmdet's (ROIAlign, aligned, thresholded at 0.5). Needs
            ``instance_mask_format="bitmask"``. detectron2 transforms the polygons and rasterises
            them at the augmented size (``"bitmask"``) or per RoI (``"polygon"``).
        Other arguments: as :class:`DatasetMapper`.
    """

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        drop_small_boxes: bool = True,
        masks_at_original_size: bool = True,
        **kwargs,
    ):
        super().__init__(is_train, **kwargs)
        if masks_at_original_size and self.use_instance_mask:
            if self.instance_mask_format != "bitmask":
                raise ValueError(
                    "MMDetDatasetMapper(masks_at_original_size=True) gives bitmap masks: set "
                    f"instance_mask_format='bitmask' (got {self.instance_mask_format!r})"
                )
        self.drop_small_boxes = drop_small_boxes
        self.masks_at_original_size = masks_at_original_size

    def _mmdet_annotations(self, record: Dict) -> List[Dict]:
        annotations = record["annotations"]
        height, width = record["height"], record["width"]
        if self.drop_small_boxes:
            annotations = [a for a in annotations if mmdet_keeps_annotation(a, height, width)]
        if self.masks_at_original_size and self.use_instance_mask:
            annotations = [
                (
                    dict(a, segmentation=_polygons_to_rle(a["segmentation"], height, width))
                    if isinstance(a.get("segmentation"), list)
                    else a
                )
                for a in annotations
            ]
        return annotations

    def __call__(self, dataset_dict: Dict) -> Dict:
        if self.is_train and "annotations" in dataset_dict:
            # a shallow copy: the record held by the dataset stays unchanged
            dataset_dict = dict(dataset_dict, annotations=self._mmdet_annotations(dataset_dict))
        return super().__call__(dataset_dict)


def _polygons_to_rle(polygons: List[List[float]], height: int, width: int) -> Dict:
    """An object's polygons (COCO format) as one RLE at height×width (mmdet's ``_poly2mask``)."""
    return mask_util.merge(mask_util.frPyObjects(polygons, height, width))
