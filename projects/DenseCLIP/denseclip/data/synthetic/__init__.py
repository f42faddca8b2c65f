"""Small synthetic segmentation and detection datasets ("shapes in a landscape") for CPU demos
and tests.

- :mod:`.rendering`: the pictures, labels and shape instances, drawn in memory;
- :mod:`.writing`: datasets written as files in the folder layouts (atomic, deterministic), and
  the CLI ``python -m denseclip.data.synthetic OUT_DIR``;
- :mod:`.registration`: the built-in datasets (``synthetic_seg_*``, ``synthetic_demo_*``,
  ``synthetic_det_*``) registered by the configs that use them.
"""

from .registration import (
    BUILTIN_SEGMENTATION,
    SYNTHETIC_DATASET_NAMES,
    SYNTHETIC_DET_DATASET_NAMES,
    register_synthetic_detection,
    register_synthetic_segmentation,
    synthetic_detection_root,
    synthetic_root,
)
from .rendering import (
    MIN_INSTANCE_AREA,
    STYLES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_COLORS,
    SYNTHETIC_DET_CATEGORIES,
    SYNTHETIC_DET_CLASSES,
    generate_instances,
    generate_sample,
)
from .writing import MARKER_NAME, write_synthetic_detection, write_synthetic_segmentation

__all__ = [
    "BUILTIN_SEGMENTATION",
    "MARKER_NAME",
    "MIN_INSTANCE_AREA",
    "STYLES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_COLORS",
    "SYNTHETIC_DATASET_NAMES",
    "SYNTHETIC_DET_CATEGORIES",
    "SYNTHETIC_DET_CLASSES",
    "SYNTHETIC_DET_DATASET_NAMES",
    "generate_instances",
    "generate_sample",
    "register_synthetic_detection",
    "register_synthetic_segmentation",
    "synthetic_detection_root",
    "synthetic_root",
    "write_synthetic_detection",
    "write_synthetic_segmentation",
]
