"""Synthetic datasets written as files, in the folder layouts of :mod:`denseclip.data.folder`.

Writing is atomic: into a temporary sibling folder, completed by a marker file
(``COMPLETE.json``, holding the generation parameters), then renamed into place, so a crash never
leaves a half dataset that looks complete, and concurrent writers of the same dataset agree.

Defaults: 128×128 images, so that an image is 4×4 cells at stride 32 (where DenseCLIP's score map
lives) and a shape covers one or a few of them, while a forward pass stays cheap on a CPU.
Segmentation: 64 train / 16 val images (about a second and 2.5 MB to write). Detection: 512 / 64
(about 6 s and 21 MB): a tiny RetinaNet overfits 64 images. With the same seed and size, both
layouts hold the same images.

CLI: ``python -m denseclip.data.synthetic OUT_DIR [--layout {segmentation,detection}]
[--num-train N] [--num-val N] [--size H W] [--seed S] [--style STYLE]``.
"""

import argparse
import json
import os
import shutil
import tempfile
from typing import Callable, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util

from ..folder import SPLITS, coco_instances_path
from .rendering import (
    MIN_INSTANCE_AREA,
    STYLES,
    SYNTHETIC_CLASSES,
    SYNTHETIC_DET_CATEGORIES,
    SYNTHETIC_DET_CLASSES,
    check_style,
    generate_instances,
    generate_sample,
)

__all__ = ["MARKER_NAME", "main", "write_synthetic_detection", "write_synthetic_segmentation"]

MARKER_NAME = "COMPLETE.json"
_GENERATOR_VERSION = 1


def _coco_annotation(mask: np.ndarray, category_id: int, image_id: int, ann_id: int) -> dict:
    """A COCO instance annotation: XYWH box around the mask, compressed-RLE segmentation."""
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
        "area": int(mask.sum()),
        "iscrowd": 0,
        "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
    }


def _write_marker(root: str, params: dict) -> None:
    with open(os.path.join(root, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump(params, f, indent=1)


def _write_detection_files(root: str, params: dict) -> None:
    """Write the COCO folder layout and finally the marker into ``root`` (an empty folder)."""
    os.makedirs(os.path.join(root, "annotations"))
    categories = [
        {"id": cat_id, "name": name, "supercategory": "shape"}
        for cat_id, name in SYNTHETIC_DET_CATEGORIES
    ]
    for split_index, (split, count) in enumerate(
        zip(SPLITS, (params["num_train"], params["num_val"]))
    ):
        os.makedirs(os.path.join(root, "images", split))
        height, width = params["image_size"]
        images, annotations = [], []
        for index in range(count):
            image, instances = generate_instances(
                params["seed"], split_index, index, (height, width)
            )
            file_name = f"{split}_{index:05d}.png"
            cv2.imwrite(os.path.join(root, "images", split, file_name), image)
            image_id = index + 1
            images.append(
                {"id": image_id, "file_name": file_name, "height": height, "width": width}
            )
            for instance in instances:
                annotations.append(
                    _coco_annotation(
                        instance["mask"], instance["category_id"], image_id, len(annotations) + 1
                    )
                )
        coco = {"images": images, "annotations": annotations, "categories": categories}
        with open(coco_instances_path(root, split), "w", encoding="utf-8") as f:
            json.dump(coco, f)
    _write_marker(root, params)


def _write_segmentation_files(root: str, params: dict) -> None:
    """Write the segmentation folder layout and finally the marker into ``root`` (an empty
    folder)."""
    with open(os.path.join(root, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(params["classes"]) + "\n")
    for split_index, (split, count) in enumerate(
        zip(SPLITS, (params["num_train"], params["num_val"]))
    ):
        for sub in ("images", "annotations"):
            os.makedirs(os.path.join(root, sub, split))
        for index in range(count):
            image, labels = generate_sample(
                params["seed"],
                split_index,
                index,
                tuple(params["image_size"]),
                params.get("style", STYLES[0]),
            )
            stem = f"{split}_{index:05d}.png"
            cv2.imwrite(os.path.join(root, "images", split, stem), image)
            cv2.imwrite(os.path.join(root, "annotations", split, stem), labels)
    _write_marker(root, params)


def _read_marker(root: str) -> Optional[dict]:
    """Generation parameters of a complete dataset at ``root``, or None if not complete."""
    try:
        with open(os.path.join(root, MARKER_NAME), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _check_existing(root: str, params: dict) -> bool:
    """True if ``root`` already holds this dataset; False if free; raise if it holds another."""
    if not os.path.exists(root) or (os.path.isdir(root) and not os.listdir(root)):
        return False
    found = _read_marker(root)
    if found == params:
        return True
    detail = f"parameters {found}" if found else f"no {MARKER_NAME} marker"
    raise FileExistsError(
        f"{root}: expected a free folder or a complete synthetic dataset with parameters "
        f"{params}, found {detail}; remove it or choose another folder"
    )


def _publish(root: str, params: dict, write_files: Callable[[str, dict], None]) -> str:
    """Write a dataset with ``write_files(folder, params)`` into a temporary sibling of ``root``
    and rename it into place; a no-op if ``root`` already holds it (see :func:`_check_existing`)."""
    if _check_existing(root, params):
        return root
    os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=os.path.dirname(root))
    try:
        write_files(tmp, params)
        try:
            os.rename(tmp, root)
        except OSError:  # another process published first: fine if it wrote the same dataset
            if not _check_existing(root, params):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_synthetic_segmentation(
    root: str,
    num_train: int = 64,
    num_val: int = 16,
    image_size: Tuple[int, int] = (128, 128),
    seed: int = 0,
    style: str = STYLES[0],
) -> str:
    """Write the synthetic dataset to ``root`` (folder layout); return its absolute path.

    Deterministic: the same arguments give byte-identical files. A no-op if ``root`` already holds
    a complete dataset with the same parameters; raises ``FileExistsError`` if it holds anything
    else. Safe against crashes and concurrent writers (temp folder + marker + rename).
    ``style``: see :data:`~denseclip.data.synthetic.STYLES`.
    """
    check_style(style)
    root = os.path.abspath(os.path.expanduser(root))
    params = {
        "generator_version": _GENERATOR_VERSION,
        "classes": list(SYNTHETIC_CLASSES),
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
    }
    if style != STYLES[0]:  # markers of datasets written without a style stay valid
        params["style"] = style
    return _publish(root, params, _write_segmentation_files)


def write_synthetic_detection(
    root: str,
    num_train: int = 512,
    num_val: int = 64,
    image_size: Tuple[int, int] = (128, 128),
    seed: int = 0,
) -> str:
    """Write the synthetic detection dataset to ``root`` (COCO folder layout: ``images/{train,
    val}/*.png``, ``annotations/instances_{train,val}.json``); return its absolute path.

    Same images as :func:`write_synthetic_segmentation` with the same arguments, and the same
    guarantees (deterministic, no-op when complete, crash- and concurrency-safe).
    """
    root = os.path.abspath(os.path.expanduser(root))
    params = {
        "generator_version": _GENERATOR_VERSION,
        "layout": "coco_instances",
        "classes": list(SYNTHETIC_DET_CLASSES),
        "min_instance_area": MIN_INSTANCE_AREA,
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
    }
    return _publish(root, params, _write_detection_files)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """``python -m denseclip.data.synthetic``: write a synthetic dataset to a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m denseclip.data.synthetic",
        description='Write a small synthetic dataset ("shapes in a landscape") to OUT_DIR.',
    )
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--layout", choices=("segmentation", "detection"), default="segmentation")
    parser.add_argument("--num-train", type=int, help="default: 64 (segmentation), 512 (detection)")
    parser.add_argument("--num-val", type=int, help="default: 16 (segmentation), 64 (detection)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--style", choices=STYLES, help="segmentation only (default: overlapping)")
    args = parser.parse_args(argv)
    write, classes = {
        "segmentation": (write_synthetic_segmentation, SYNTHETIC_CLASSES),
        "detection": (write_synthetic_detection, SYNTHETIC_DET_CLASSES),
    }[args.layout]
    if args.style is not None and args.layout != "segmentation":
        parser.error("--style: only the segmentation layout has styles")
    options = {"num_train": args.num_train, "num_val": args.num_val, "style": args.style}
    options = {key: value for key, value in options.items() if value is not None}
    root = write(args.out_dir, image_size=tuple(args.size), seed=args.seed, **options)
    print(f"synthetic {args.layout} dataset ({', '.join(classes)}) at {root}")
