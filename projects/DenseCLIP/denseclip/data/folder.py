"""Register a dataset from a folder (``--dataset NAME=ROOT``).

Segmentation layout::

    ROOT/classes.txt                      one class name per line (blank lines ignored)
    ROOT/images/{train,val}/STEM.{jpg,jpeg,png}
    ROOT/annotations/{train,val}/STEM.png single-channel uint8, class ids 0..K-1, 255 = ignore

Detection layout (COCO instances; boxes, optionally polygon or RLE masks)::

    ROOT/images/{train,val}/...                   file_name in the JSON is relative to these
    ROOT/annotations/instances_{train,val}.json

``register_folder_dataset(name, root)`` registers ``{name}_train`` and ``{name}_val``. Folder
structure is checked eagerly, at registration (listing folders is cheap); segmentation label
values and image headers (size, EXIF orientation) are checked when the dataset dicts are first
loaded (``DatasetCatalog.get``), so a bad file is reported before training starts. Image bodies
are decoded only when training reads them (decoding every image up front would cost as much as
an epoch of reading): a truncated image stops training at its first read, named
(:class:`~denseclip.data.DenseCLIPDatasetMapper`). COCO files are read and checked at
registration (their categories are the class names the model is built with); their images are
checked to exist, not opened (the JSON gives their sizes). Every problem raises
:class:`DatasetFormatError` naming the path, what was expected and what was found.

Extension point: a new layout is recognised in :func:`detect_layout` and registered by a
function added to ``_REGISTRARS``.
"""

import argparse
import copy
import json
import os
import re
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from .image_io import ImageReadError, image_size

__all__ = [
    "DatasetFormatError",
    "DatasetArgError",
    "IGNORE_LABEL",
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

IGNORE_LABEL = 255
SPLITS = ("train", "val")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
LABEL_EXTENSION = ".png"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]+$")
#: COCO boxes may overshoot their image by this many pixels (rounding in exported files).
BOX_TOLERANCE = 1.0
#: Keys every COCO annotation needs (COCOeval reads ``area`` and ``iscrowd``).
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")


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


def coco_instances_path(root: str, split: str) -> str:
    """``ROOT/annotations/instances_{split}.json``: the COCO file of a detection-layout split."""
    return os.path.join(root, "annotations", f"instances_{split}.json")


def detect_layout(root: str) -> str:
    """Return the layout of the dataset folder ``root``: ``"segmentation"`` or ``"detection"``.

    Segmentation is recognised by ``ROOT/classes.txt`` or ``ROOT/annotations/{train,val}/``,
    detection by ``ROOT/annotations/instances_{train,val}.json``. Raises
    :class:`DatasetFormatError` naming what was looked for when nothing matches, and when both
    layouts match.
    """
    _require_dir(root, "dataset root")
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


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise DatasetFormatError(
            f"annotations file: expected {path} (COCO instances JSON), found nothing"
        )
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as error:
            raise DatasetFormatError(
                f"annotations file {path}: expected COCO instances JSON, found invalid JSON "
                f"({error})"
            ) from None
    keys = ("images", "annotations", "categories")
    missing = [key for key in keys if key not in data] if isinstance(data, dict) else keys
    if missing:
        found = f"no key {missing[0]!r}" if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(
            f"annotations file {path}: expected a dict with keys 'images', 'annotations' and "
            f"'categories', found {found}"
        )
    return data


def _check_fields(path: str, key: str, index: int, entry, fields: Sequence[str]) -> None:
    missing = [field for field in fields if not isinstance(entry, dict) or field not in entry]
    if missing:
        raise DatasetFormatError(
            f"annotations file {path}: expected {key}[{index}] to have {', '.join(fields)}, "
            f"found {entry!r} without {missing[0]!r}"
        )


def _check_box(path: str, index: int, annotation: dict, image: dict) -> None:
    """Check that an annotation's [x, y, w, h] box lies inside its image."""
    box = annotation["bbox"]
    where = f"annotations file {path}: annotations[{index}] (id {annotation.get('id')}) 'bbox'"
    if not (isinstance(box, list) and len(box) == 4):
        raise DatasetFormatError(f"{where}: expected [x, y, width, height], found {box!r}")
    x, y, w, h = box
    width, height = image["width"], image["height"]
    inside = (
        w >= 0
        and h >= 0
        and x >= -BOX_TOLERANCE
        and y >= -BOX_TOLERANCE
        and x + w <= width + BOX_TOLERANCE
        and y + h <= height + BOX_TOLERANCE
    )
    if not inside:
        raise DatasetFormatError(
            f"{where}: expected a box inside image id {image['id']} ({image['file_name']}, "
            f"{width}x{height}, tolerance {BOX_TOLERANCE} px), found [x, y, w, h] = {box}"
        )


def read_coco_categories(json_file: str, image_root: str) -> List[Tuple[int, str]]:
    """Check a COCO instances file and return its categories ``(id, name)`` sorted by id.

    Checks: the file exists and holds ``images``, ``annotations`` and ``categories``; at least
    one category and one image; unique category ids; every image has ``id``, ``file_name``,
    ``width``, ``height`` and its file exists under ``image_root``; every annotation has
    :data:`ANNOTATION_FIELDS`, refers to a known image and category and has a ``bbox`` inside
    its image (up to :data:`BOX_TOLERANCE`).
    """
    data = _read_json(json_file)
    categories = {}
    for index, category in enumerate(data["categories"]):
        _check_fields(json_file, "categories", index, category, ("id", "name"))
        if category["id"] in categories:
            raise DatasetFormatError(
                f"annotations file {json_file}: expected unique category ids, found id "
                f"{category['id']} twice ({categories[category['id']]!r}, {category['name']!r})"
            )
        categories[category["id"]] = category["name"]
    if not categories:
        raise DatasetFormatError(
            f"annotations file {json_file}: expected at least one entry in 'categories', "
            "found none"
        )
    images = {}
    for index, image in enumerate(data["images"]):
        _check_fields(json_file, "images", index, image, ("id", "file_name", "width", "height"))
        image_path = os.path.join(image_root, image["file_name"])
        if not os.path.isfile(image_path):
            raise DatasetFormatError(
                f"annotations file {json_file}: images[{index}] (id {image['id']}) expects "
                f"the image file {image_path}, found nothing"
            )
        images[image["id"]] = image
    if not images:
        raise DatasetFormatError(
            f"annotations file {json_file}: expected at least one entry in 'images', found none"
        )
    for index, annotation in enumerate(data["annotations"]):
        _check_fields(json_file, "annotations", index, annotation, ANNOTATION_FIELDS)
        for key, known in (("image_id", images), ("category_id", categories)):
            if annotation[key] not in known:
                raise DatasetFormatError(
                    f"annotations file {json_file}: annotations[{index}] (id "
                    f"{annotation.get('id')}) has unknown {key} {annotation[key]!r}; expected "
                    f"one of {sorted(known)[:20]}{' ...' if len(known) > 20 else ''}"
                )
        _check_box(json_file, index, annotation, images[annotation["image_id"]])
    return sorted(categories.items())


def detection_metadata(categories: Sequence[Tuple[int, str]]) -> dict:
    """Class metadata of a COCO-format dataset with ``categories`` ``(id, name)`` sorted by id:
    ``thing_classes`` and ``class_prompts`` (the names) and
    ``thing_dataset_id_to_contiguous_id``, as detectron2's ``load_coco_json`` sets them."""
    names = [name for _, name in categories]
    return {
        "thing_classes": names,
        "class_prompts": names,
        "thing_dataset_id_to_contiguous_id": {
            cat_id: i for i, (cat_id, _) in enumerate(categories)
        },
    }


def _register_detection(name: str, root: str) -> List[str]:
    split_categories = {}
    for split in SPLITS:
        image_root = os.path.join(root, "images", split)
        _require_dir(image_root, f"{split} images")
        split_categories[split] = read_coco_categories(coco_instances_path(root, split), image_root)
    first, *others = SPLITS
    for split in others:
        if split_categories[split] != split_categories[first]:
            raise DatasetFormatError(
                f"annotations file {coco_instances_path(root, split)}: expected the categories "
                f"of {coco_instances_path(root, first)} ({split_categories[first]}), found "
                f"{split_categories[split]}"
            )
    names = []
    for split in SPLITS:
        split_name = f"{name}_{split}"
        register_coco_instances(
            split_name,
            {"dataset_root": root, **detection_metadata(split_categories[split])},
            coco_instances_path(root, split),
            os.path.join(root, "images", split),
        )
        names.append(split_name)
    return names


_REGISTRARS: Dict[str, Callable[[str, str], List[str]]] = {
    "segmentation": _register_segmentation,
    "detection": _register_detection,
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
