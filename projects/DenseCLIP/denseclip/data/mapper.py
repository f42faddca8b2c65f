"""detectron2's ``DatasetMapper`` reading files with :mod:`denseclip.data.image_io`."""

import copy

import numpy as np
import torch

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .image_io import read_image, read_label

__all__ = ["DenseCLIPDatasetMapper"]


class DenseCLIPDatasetMapper(DatasetMapper):
    """:class:`detectron2.data.DatasetMapper` (same arguments, same outputs) that reads the image
    with :func:`~denseclip.data.image_io.read_image` (16-bit greyscale scaled instead of
    clipped) and names the file in every read or size error.

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
        labels = read_label(labels_file) if labels_file is not None else None

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
