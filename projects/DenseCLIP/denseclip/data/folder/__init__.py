"""Register a dataset from a folder (``--dataset NAME=ROOT``).

Two layouts: segmentation (:mod:`.segmentation`: ``classes.txt``, ``images/{train,val}/``,
``annotations/{train,val}/*.png`` of class ids) and detection (:mod:`.coco_instances`:
``images/{train,val}/``, ``annotations/instances_{train,val}.json``).

``register_folder_dataset(name, root)`` registers ``{name}_train`` and ``{name}_val``. Every
problem is found before training starts, except a truncated image body, which stops training
at its first read, named (:class:`~denseclip.data.DenseCLIPDatasetMapper`): decoding every
image up front would cost as much as an epoch of reading. Every problem raises
:class:`DatasetFormatError` naming the path, what was expected and what was found.

Extension point: a new layout is recognised in :func:`detect_layout` and registered by a
function added to ``_REGISTRARS``.
"""

import argparse
import os
import re
from typing import Callable, Dict, List, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from .coco_instances import (
    BOX_TOLERANCE,
    coco_instances_path,
    detection_metadata,
    read_coco_categories,
    register_detection_folder,
)
from .layout import SPLITS, DatasetFormatError, require_dir
from .segmentation import (
    IGNORE_LABEL,
    IMAGE_EXTENSIONS,
    load_segmentation_split,
    read_classes,
    register_segmentation_folder,
    segmentation_metadata,
)

__all__ = [
    "BOX_TOLERANCE",
    "DatasetArgError",
    "DatasetFormatError",
    "IGNORE_LABEL",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "coco_instances_path",
    "detect_layout",
    "detection_metadata",
    "load_segmentation_split",
    "parse_dataset_arg",
    "read_classes",
    "read_coco_categories",
    "register_folder_dataset",
    "segmentation_metadata",
]

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")


class DatasetArgError(argparse.ArgumentTypeError, ValueError):
    """A malformed ``NAME=ROOT`` argument.

    An ``ArgumentTypeError`` so that ``argparse`` (``type=parse_dataset_arg``) prints the message,
    and a ``ValueError`` for every other caller.
    """


def parse_dataset_arg(text: str) -> Tuple[str, str]:
    """Parse the CLI form ``NAME=ROOT`` into ``(name, root)``; ``root`` is user-expanded.

    NAME may contain letters, digits, ``_``, ``.`` and ``-``; ROOT must be non-empty.
    """
    name, sep, root = text.partition("=")
    name, root = name.strip(), root.strip()
    if not sep or not root or not _NAME_PATTERN.match(name):
        raise DatasetArgError(
            f"expected NAME=ROOT (e.g. shapes=/data/shapes; NAME of letters, digits, '_', '.', "
            f"'-'), got {text!r}"
        )
    return name, os.path.expanduser(root)


def detect_layout(root: str) -> str:
    """Return the layout of the dataset folder ``root``: ``"segmentation"`` or ``"detection"``.

    Segmentation is recognised by ``ROOT/classes.txt`` or ``ROOT/annotations/{train,val}/``,
    detection by ``ROOT/annotations/instances_{train,val}.json``. Raises
    :class:`DatasetFormatError` naming what was looked for when nothing matches, and when both
    layouts match.
    """
    require_dir(root, "dataset root")
    segmentation = [os.path.join(root, "classes.txt")]
    segmentation += [os.path.join(root, "annotations", split) for split in SPLITS]
    detection = [coco_instances_path(root, split) for split in SPLITS]
    found = {
        layout: [path for path in paths if os.path.exists(path)]
        for layout, paths in (("segmentation", segmentation), ("detection", detection))
    }
    if found["segmentation"] and found["detection"]:
        raise DatasetFormatError(
            f"dataset root {root}: expected one layout, found both segmentation "
            f"({', '.join(found['segmentation'])}) and detection ({', '.join(found['detection'])})"
        )
    for layout, paths in found.items():
        if paths:
            return layout
    raise DatasetFormatError(
        f"dataset root {root}: no known layout; looked for {', '.join(segmentation)} "
        f"(segmentation layout) and {', '.join(detection)} (detection layout), found "
        f"{sorted(os.listdir(root)) or 'an empty folder'}"
    )


_REGISTRARS: Dict[str, Callable[[str, str], List[str]]] = {
    "segmentation": register_segmentation_folder,
    "detection": register_detection_folder,
}


def _already_registered(name: str, root: str) -> bool:
    """True if ``name`` is registered from ``root``; raise if registered from elsewhere."""
    split_names = [f"{name}_{split}" for split in SPLITS]
    registered = [n for n in split_names if n in DatasetCatalog.list()]
    if not registered:
        return False
    previous = MetadataCatalog.get(registered[0]).get("dataset_root")
    if previous != root or len(registered) != len(split_names):
        raise DatasetFormatError(
            f"dataset {name!r}: expected {', '.join(split_names)} to be unregistered or "
            f"registered from {root}, found {', '.join(registered)} registered from "
            f"{previous or 'a different source'}"
        )
    return True


def register_folder_dataset(name: str, root: str) -> List[str]:
    """Register ``{name}_train`` and ``{name}_val`` from the dataset folder ``root``.

    Returns the registered names. Metadata of a segmentation folder: ``stuff_classes``,
    ``class_prompts``, ``stuff_colors``, ``ignore_label`` (255), ``evaluator_type``
    ("sem_seg"), ``image_root``, ``sem_seg_root``; of a detection folder: ``thing_classes`` and
    ``class_prompts`` (the category names in id order), ``thing_dataset_id_to_contiguous_id``,
    ``evaluator_type`` ("coco"), ``json_file``, ``image_root`` (detectron2's
    ``register_coco_instances``); both: ``dataset_root`` (absolute ``root``). Registering the
    same name from the same root again is a no-op; from another root it raises
    :class:`DatasetFormatError`.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if _already_registered(name, root):
        return [f"{name}_{split}" for split in SPLITS]
    return _REGISTRARS[detect_layout(root)](name, root)
