"""The built-in synthetic datasets in detectron2's catalogs, written on first use.

Registered only where they are used: the configs of ``configs/Synthetic/`` call
:func:`register_synthetic_segmentation` or :func:`register_synthetic_detection`, so every entry
point that loads such a config (``train_net.py``, ``Predictor``, the tools) finds them. The files
are written to ``$DENSECLIP_DATASETS/<prefix>`` (default ``~/.cache/denseclip/datasets``) when a
dataset is first loaded.
"""

import functools
import os
from typing import Callable, List

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from ..folder import (
    SPLITS,
    coco_instances_path,
    detection_metadata,
    load_segmentation_split,
    segmentation_metadata,
)
from .rendering import SYNTHETIC_CLASSES, SYNTHETIC_COLORS, SYNTHETIC_DET_CATEGORIES
from .writing import write_synthetic_detection, write_synthetic_segmentation

__all__ = [
    "BUILTIN_SEGMENTATION",
    "SYNTHETIC_DATASET_NAMES",
    "SYNTHETIC_DET_DATASET_NAMES",
    "register_synthetic_detection",
    "register_synthetic_segmentation",
    "synthetic_detection_root",
    "synthetic_root",
]

SYNTHETIC_DATASET_NAMES = tuple(f"synthetic_seg_{split}" for split in SPLITS)
SYNTHETIC_DET_DATASET_NAMES = tuple(f"synthetic_det_{split}" for split in SPLITS)
#: The built-in segmentation datasets: name prefix (and folder under $DENSECLIP_DATASETS) →
#: arguments of :func:`write_synthetic_segmentation`. ``synthetic_seg`` is small and quick for
#: tests and tiny configs; ``synthetic_demo`` is the demo's (configs/Synthetic/denseclip_fpn_demo.py).
BUILTIN_SEGMENTATION = {
    "synthetic_seg": {},
    "synthetic_demo": {"num_train": 1024, "num_val": 64, "style": "apart"},
}


def _datasets_dir() -> str:
    base = os.environ.get("DENSECLIP_DATASETS") or "~/.cache/denseclip/datasets"
    return os.path.expanduser(base)


def synthetic_root(prefix: str = "synthetic_seg") -> str:
    """Where a built-in segmentation dataset lives: ``$DENSECLIP_DATASETS/<prefix>`` (the
    variable read at each call); ``prefix``: ``synthetic_seg`` or ``synthetic_demo``."""
    return os.path.join(_datasets_dir(), prefix)


def synthetic_detection_root() -> str:
    """Where the built-in detection dataset lives: ``$DENSECLIP_DATASETS/synthetic_det`` (the
    variable read at each call)."""
    return os.path.join(_datasets_dir(), "synthetic_det")


def _register(name: str, load: Callable[[], List[dict]], **metadata) -> None:
    """Register ``name`` with its loader and metadata, unless it is registered already (configs
    that call the registration are loaded many times in one process)."""
    if name in DatasetCatalog.list():
        return
    DatasetCatalog.register(name, load)
    MetadataCatalog.get(name).set(**metadata)


def _load_builtin(prefix: str, split: str) -> List[dict]:
    root = write_synthetic_segmentation(synthetic_root(prefix), **BUILTIN_SEGMENTATION[prefix])
    return load_segmentation_split(root, split)


def register_synthetic_segmentation() -> None:
    """Register ``synthetic_seg_{train,val}`` and ``synthetic_demo_{train,val}``
    (:data:`BUILTIN_SEGMENTATION`): metadata now, data written on first load. Names already
    registered are left as they are."""
    for prefix in BUILTIN_SEGMENTATION:
        for split in SPLITS:
            metadata = dict(segmentation_metadata(SYNTHETIC_CLASSES), stuff_colors=SYNTHETIC_COLORS)
            load = functools.partial(_load_builtin, prefix, split)
            _register(f"{prefix}_{split}", load, **metadata)


def _load_builtin_detection(split: str, name: str) -> List[dict]:
    root = write_synthetic_detection(synthetic_detection_root())
    json_file = coco_instances_path(root, split)
    image_root = os.path.join(root, "images", split)
    metadata = MetadataCatalog.get(name)
    # The location is known once the environment is read; COCOEvaluator needs ``json_file``. It
    # may have set its own (a conversion of these dicts) if built before the data was loaded.
    if metadata.get("json_file") is None:
        metadata.set(json_file=json_file, image_root=image_root)
    return load_coco_json(json_file, image_root, name)


def register_synthetic_detection() -> None:
    """Register ``synthetic_det_{train,val}``: metadata now, data written on first load (which
    also sets ``json_file`` and ``image_root``). Names already registered are left as they
    are."""
    for split, name in zip(SPLITS, SYNTHETIC_DET_DATASET_NAMES):
        load = functools.partial(_load_builtin_detection, split, name)
        _register(name, load, evaluator_type="coco", **detection_metadata(SYNTHETIC_DET_CATEGORIES))
