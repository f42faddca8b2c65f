"""Register a dataset from a folder (``--dataset NAME=ROOT``).

Segmentation layout (the only one implemented here)::

    ROOT/classes.txt                      one class name per line (blank lines ignored)
    ROOT/images/{train,val}/STEM.{jpg,jpeg,png}
    ROOT/annotations/{train,val}/STEM.png single-channel uint8, class ids 0..K-1, 255 = ignore

``register_folder_dataset(name, root)`` registers ``{name}_train`` and ``{name}_val``. Folder
structure is checked eagerly, at registration (listing folders is cheap); label values are checked
when the dataset dicts are first loaded (``DatasetCatalog.get``), so a bad file is reported before
training starts. Every problem raises :class:`DatasetFormatError` naming the path, what was
expected and what was found.

Extension point: a detection layout (``ROOT/annotations/instances_{train,val}.json``, COCO) is
added by recognising it in :func:`detect_layout` and adding its registration function to
``_REGISTRARS``.
"""

import argparse
import copy
import os
import re
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

__all__ = [
    "DatasetFormatError",
    "DatasetArgError",
    "IGNORE_LABEL",
    "SPLITS",
    "detect_layout",
    "load_segmentation_split",
    "parse_dataset_arg",
    "read_classes",
    "register_folder_dataset",
    "segmentation_metadata",
]

IGNORE_LABEL = 255
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_EXTENSION = ".png"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")


class DatasetFormatError(ValueError):
    """A dataset folder does not follow the expected layout or label format."""


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


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        found = "a file" if os.path.exists(path) else "nothing"
        raise DatasetFormatError(f"{what}: expected a folder at {path}, found {found}")


def detect_layout(root: str) -> str:
    """Return the layout of the dataset folder ``root``: ``"segmentation"``.

    Recognised by ``ROOT/classes.txt`` or ``ROOT/annotations/{train,val}/``. Raises
    :class:`DatasetFormatError` naming what was looked for when nothing matches. A detection
    layout (``ROOT/annotations/instances_{train,val}.json``) is to be recognised here too.
    """
    _require_dir(root, "dataset root")
    looked_for = [os.path.join(root, "classes.txt")]
    looked_for += [os.path.join(root, "annotations", split) for split in SPLITS]
    if any(os.path.exists(path) for path in looked_for):
        return "segmentation"
    raise DatasetFormatError(
        f"dataset root {root}: no known layout; looked for {', '.join(looked_for)} "
        f"(segmentation layout), found {sorted(os.listdir(root)) or 'an empty folder'}"
    )


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
    """Map file stem → path for files in ``folder`` with one of ``extensions`` (case-insensitive)."""
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
    _require_dir(image_dir, f"{split} images")
    _require_dir(label_dir, f"{split} labels")
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
    with Image.open(image_path) as image:
        width, height = image.size
    if label.shape != (height, width):
        raise DatasetFormatError(
            f"label {label_path}: expected the size of image {image_path} ({height}x{width}), "
            f"found {label.shape[0]}x{label.shape[1]}"
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
    _require_dir(root, "dataset root")
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


def _register_segmentation(name: str, root: str) -> List[str]:
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


_REGISTRARS: Dict[str, Callable[[str, str], List[str]]] = {
    "segmentation": _register_segmentation,
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

    Returns the registered names. Metadata: ``stuff_classes``, ``class_prompts``,
    ``stuff_colors``, ``ignore_label`` (255), ``evaluator_type`` ("sem_seg"), ``image_root``,
    ``sem_seg_root`` and ``dataset_root`` (absolute ``root``). Registering the same name from the
    same root again is a no-op; from another root it raises :class:`DatasetFormatError`.
    """
    root = os.path.abspath(os.path.expanduser(root))
    if _already_registered(name, root):
        return [f"{name}_{split}" for split in SPLITS]
    return _REGISTRARS[detect_layout(root)](name, root)
