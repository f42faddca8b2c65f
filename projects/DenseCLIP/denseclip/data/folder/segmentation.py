"""The segmentation folder layout::

    ROOT/classes.txt                      one class name per line (blank lines ignored)
    ROOT/images/{train,val}/STEM.{jpg,jpeg,png}
    ROOT/annotations/{train,val}/STEM.png single-channel uint8, class ids 0..K-1, 255 = ignore

The structure is checked at registration (listing folders is cheap); label values and image
headers (size, EXIF orientation) when the dataset dicts are first loaded, so a bad file is
reported before training starts.
"""

import copy
import os
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..image_io import ImageReadError, image_size
from .layout import SPLITS, DatasetFormatError, require_dir

__all__ = [
    "IGNORE_LABEL",
    "IMAGE_EXTENSIONS",
    "load_segmentation_split",
    "read_classes",
    "register_segmentation_folder",
    "segmentation_metadata",
]

IGNORE_LABEL = 255
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_EXTENSION = ".png"


def read_classes(root: str) -> List[str]:
    """Class names of a segmentation dataset: the non-blank lines of ``ROOT/classes.txt``.

    At most 255 names, since label value 255 means ignore.
    """
    path = os.path.join(root, "classes.txt")
    if not os.path.isfile(path):
        raise DatasetFormatError(
            f"classes file: expected {path} (one class name per line), found nothing"
        )
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise DatasetFormatError(f"classes file {path}: expected class names, found none")
    if len(names) > IGNORE_LABEL:
        raise DatasetFormatError(
            f"classes file {path}: expected at most {IGNORE_LABEL} classes "
            f"({IGNORE_LABEL} = ignore), found {len(names)}"
        )
    return names


def _files_by_stem(folder: str, extensions: Sequence[str]) -> Dict[str, str]:
    """{file stem: path} of the files in ``folder`` with one of ``extensions`` (any case)."""
    by_stem: Dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(entry)
        if ext.lower() not in extensions:
            continue
        path = os.path.join(folder, entry)
        if stem in by_stem:
            raise DatasetFormatError(
                f"folder {folder}: expected one file per stem, found {by_stem[stem]} and {path}"
            )
        by_stem[stem] = path
    return by_stem


def _list_split(root: str, split: str) -> List[Tuple[str, str]]:
    """Check the structure of one split; return sorted ``(image_path, label_path)`` pairs."""
    image_dir = os.path.join(root, "images", split)
    label_dir = os.path.join(root, "annotations", split)
    require_dir(image_dir, f"{split} images")
    require_dir(label_dir, f"{split} labels")
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    labels = _files_by_stem(label_dir, (LABEL_EXTENSION,))
    for stem, image_path in images.items():
        if stem not in labels:
            expected = os.path.join(label_dir, stem + LABEL_EXTENSION)
            raise DatasetFormatError(
                f"image {image_path} has no label: expected {expected}, found nothing"
            )
    for stem, label_path in labels.items():
        if stem not in images:
            expected = " or ".join(os.path.join(image_dir, stem + ext) for ext in IMAGE_EXTENSIONS)
            raise DatasetFormatError(
                f"label {label_path} has no image: expected {expected}, found nothing"
            )
    if not images:
        raise DatasetFormatError(
            f"{split} split is empty: expected images ({', '.join(IMAGE_EXTENSIONS)}) in "
            f"{image_dir}, found none"
        )
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def _read_checked_label(label_path: str, image_path: str, num_classes: int) -> Tuple[int, int]:
    """Read a label once, check its format, values and size; return its ``(height, width)``."""
    label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
    if label is None or label.ndim != 2 or label.dtype != np.uint8:
        found = "an unreadable file" if label is None else f"shape {label.shape} {label.dtype}"
        raise DatasetFormatError(
            f"label {label_path}: expected a single-channel 8-bit PNG of class ids "
            f"(not RGB or palette), found {found}"
        )
    max_value = int(label.max())
    if max_value >= num_classes and max_value != IGNORE_LABEL:
        values = np.unique(label)
        bad = values[(values >= num_classes) & (values != IGNORE_LABEL)]
        raise DatasetFormatError(
            f"label {label_path}: expected class ids 0..{num_classes - 1} (K={num_classes}) or "
            f"{IGNORE_LABEL} (ignore), found value {int(bad[0])} (all bad values: {bad.tolist()})"
        )
    try:
        height, width = image_size(image_path)
    except ImageReadError as error:
        raise DatasetFormatError(f"image {image_path}: expected an image file, {error}") from None
    if label.shape != (height, width):
        raise DatasetFormatError(
            f"label {label_path}: expected the size of image {image_path} as displayed "
            f"({height}x{width}, EXIF orientation applied), found {label.shape[0]}x{label.shape[1]}"
        )
    return height, width


def _load_dicts(pairs: List[Tuple[str, str]], num_classes: int) -> List[dict]:
    """detectron2 semantic-segmentation dicts for checked ``(image, label)`` pairs."""
    dicts = []
    for image_path, label_path in pairs:
        height, width = _read_checked_label(label_path, image_path, num_classes)
        dicts.append(
            {
                "file_name": image_path,
                "sem_seg_file_name": label_path,
                "height": height,
                "width": width,
                "image_id": os.path.splitext(os.path.basename(image_path))[0],
            }
        )
    return dicts


def load_segmentation_split(root: str, split: str) -> List[dict]:
    """Check and load one split of a segmentation-layout folder (structure and label values).

    Returns detectron2 dicts ``{"file_name", "sem_seg_file_name", "height", "width",
    "image_id"}`` sorted by stem.
    """
    require_dir(root, "dataset root")
    return _load_dicts(_list_split(root, split), len(read_classes(root)))


def _palette(num_classes: int) -> List[List[int]]:
    """Distinct RGB colours (PASCAL VOC bit-interleaving palette, skipping black)."""
    colors = []
    for index in range(1, num_classes + 1):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((index >> (3 * bit + channel)) & 1) << (7 - bit)
        colors.append(rgb)
    return colors


def segmentation_metadata(classes: Sequence[str]) -> dict:
    """Metadata shared by every segmentation dataset of class names ``classes`` (K names).

    ``stuff_classes`` (display) and ``class_prompts`` (text-encoder input) are both the names;
    ``stuff_colors`` a K×3 RGB palette; ``ignore_label`` 255; ``evaluator_type`` "sem_seg".
    """
    return {
        "stuff_classes": list(classes),
        "class_prompts": list(classes),
        "stuff_colors": _palette(len(classes)),
        "ignore_label": IGNORE_LABEL,
        "evaluator_type": "sem_seg",
    }


def _cached_loader(pairs: List[Tuple[str, str]], num_classes: int) -> Callable[[], List[dict]]:
    """A DatasetCatalog loader that checks label values on the first call only."""
    cache: List[List[dict]] = []

    def load() -> List[dict]:
        if not cache:
            cache.append(_load_dicts(pairs, num_classes))
        return copy.deepcopy(cache[0])

    return load


def register_segmentation_folder(name: str, root: str) -> List[str]:
    """Register ``{name}_{train,val}`` from the segmentation folder ``root``; return the names."""
    classes = read_classes(root)
    split_pairs = {split: _list_split(root, split) for split in SPLITS}
    names = []
    for split, pairs in split_pairs.items():
        split_name = f"{name}_{split}"
        DatasetCatalog.register(split_name, _cached_loader(pairs, len(classes)))
        MetadataCatalog.get(split_name).set(
            image_root=os.path.join(root, "images", split),
            sem_seg_root=os.path.join(root, "annotations", split),
            dataset_root=root,
            **segmentation_metadata(classes),
        )
        names.append(split_name)
    return names
