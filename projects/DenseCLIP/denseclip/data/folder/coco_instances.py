"""The detection folder layout (COCO instances; boxes, optionally polygon or RLE masks)::

    ROOT/images/{train,val}/...                   file_name in the JSON is relative to these
    ROOT/annotations/instances_{train,val}.json

The COCO files are read and checked at registration (their categories are the class names the
model is built with); their images are checked to exist, not opened (the JSON gives their sizes).
"""

import json
import os
from typing import List, Sequence, Tuple

from detectron2.data.datasets import register_coco_instances

from .layout import SPLITS, DatasetFormatError, require_dir

__all__ = [
    "ANNOTATION_FIELDS",
    "BOX_TOLERANCE",
    "coco_instances_path",
    "detection_metadata",
    "read_coco_categories",
    "register_detection_folder",
]

#: COCO boxes may overshoot their image by this many pixels (rounding in exported files).
BOX_TOLERANCE = 1.0
#: Keys every COCO annotation needs (COCOeval reads ``area`` and ``iscrowd``).
ANNOTATION_FIELDS = ("id", "image_id", "category_id", "bbox", "area", "iscrowd")


def coco_instances_path(root: str, split: str) -> str:
    """``ROOT/annotations/instances_{split}.json``: the COCO file of a detection-layout split."""
    return os.path.join(root, "annotations", f"instances_{split}.json")


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


def register_detection_folder(name: str, root: str) -> List[str]:
    """Register ``{name}_{train,val}`` from the detection folder ``root`` (both splits with the
    same categories); return the names."""
    split_categories = {}
    for split in SPLITS:
        image_root = os.path.join(root, "images", split)
        require_dir(image_root, f"{split} images")
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
