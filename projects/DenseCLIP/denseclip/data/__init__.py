"""Datasets and augmentations for DenseCLIP.

Importing this package sets ``class_prompts`` on detectron2's built-in datasets: mmseg's 150
short names on ``ade20k_sem_seg_{train,val}``, mmdet's 80 names on ``coco_2017_{train,val}``.
Own data: :func:`register_folder_dataset`. The synthetic datasets (:mod:`.synthetic`) are
registered by the configs that use them (:func:`register_synthetic_segmentation`,
:func:`register_synthetic_detection`).
"""

from .ade20k import (
    ADE20K_CHALLENGE_NAMES,
    ADE20K_CLASSES,
    ADE20K_DATASET_NAMES,
    register_ade20k_challenge,
    register_ade20k_prompts,
)
from .catalog import sem_seg_label_loader
from .coco import COCO_CLASSES, COCO_DATASET_NAMES, register_coco_prompts
from .folder import (
    IGNORE_LABEL,
    DatasetArgError,
    DatasetFormatError,
    coco_instances_path,
    detect_layout,
    detection_metadata,
    load_segmentation_split,
    parse_dataset_arg,
    read_classes,
    read_coco_categories,
    register_folder_dataset,
    segmentation_metadata,
)
from .image_io import ImageReadError, image_size, read_image, read_label
from .mappers import DenseCLIPDatasetMapper, MMDetDatasetMapper, mmdet_keeps_annotation
from .synthetic import (
    SYNTHETIC_CLASSES,
    SYNTHETIC_DATASET_NAMES,
    SYNTHETIC_DET_CLASSES,
    SYNTHETIC_DET_DATASET_NAMES,
    register_synthetic_detection,
    register_synthetic_segmentation,
    synthetic_detection_root,
    synthetic_root,
    write_synthetic_detection,
    write_synthetic_segmentation,
)
from .transforms import (
    RESIZE_BACKENDS,
    KeepRatioResize,
    OpenCVResizeTransform,
    PhotoMetricDistortion,
    PhotoMetricTransform,
    RandomCropCatMaxRatio,
    RandomRatioResize,
    ade20k_test_augmentations,
    ade20k_train_augmentations,
    coco_test_augmentations,
    coco_train_augmentations,
    mmcv_rescale_size,
    resize_transform,
)

__all__ = [
    "ADE20K_CHALLENGE_NAMES",
    "ADE20K_CLASSES",
    "ADE20K_DATASET_NAMES",
    "COCO_CLASSES",
    "COCO_DATASET_NAMES",
    "DatasetArgError",
    "DenseCLIPDatasetMapper",
    "DatasetFormatError",
    "IGNORE_LABEL",
    "ImageReadError",
    "KeepRatioResize",
    "MMDetDatasetMapper",
    "OpenCVResizeTransform",
    "PhotoMetricDistortion",
    "PhotoMetricTransform",
    "RESIZE_BACKENDS",
    "RandomCropCatMaxRatio",
    "RandomRatioResize",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DATASET_NAMES",
    "SYNTHETIC_DET_CLASSES",
    "SYNTHETIC_DET_DATASET_NAMES",
    "ade20k_test_augmentations",
    "ade20k_train_augmentations",
    "coco_test_augmentations",
    "coco_train_augmentations",
    "coco_instances_path",
    "detect_layout",
    "detection_metadata",
    "image_size",
    "load_segmentation_split",
    "mmdet_keeps_annotation",
    "mmcv_rescale_size",
    "parse_dataset_arg",
    "read_classes",
    "read_image",
    "read_label",
    "sem_seg_label_loader",
    "read_coco_categories",
    "register_ade20k_challenge",
    "register_ade20k_prompts",
    "register_coco_prompts",
    "register_folder_dataset",
    "register_synthetic_detection",
    "register_synthetic_segmentation",
    "resize_transform",
    "segmentation_metadata",
    "synthetic_detection_root",
    "synthetic_root",
    "write_synthetic_detection",
    "write_synthetic_segmentation",
]

register_ade20k_prompts()
register_ade20k_challenge()
register_coco_prompts()
