"""Small synthetic segmentation and detection datasets ("shapes in a landscape") for CPU demos.

Each image is a landscape: a "sky" (smooth vertical gradient in blues) above a wavy horizon and
"grass" (green, vertically streaked noise) below, with 1–4 filled "circle", "square" (rotated)
and "triangle" shapes on top, possibly overlapping. Every instance gets its own colour (any hue,
so colour alone does not give the class away: shapes are told apart by geometry, the background
by colour and texture), a shading gradient and anti-aliased edges; the partially covered edge
pixels are labelled 255 (ignore), as in PASCAL VOC, so training always exercises the ignore path.

Defaults (128×128, 64 train / 16 val images, seed 0) and why: at 128² an image is 4×4 cells at
stride 32, where DenseCLIP's score map lives, and a shape (the area of a disc of radius 10–26 px)
covers one or a few cells, so the score map is meaningful while a forward pass stays cheap on a
CPU. Chance level is low (predicting the majority class everywhere gives mIoU ≈ 0.1). Measured
with a small FCN (width 16, stride-32 encoder with FPN-style decoder, AdamW 1e-3, batch 8, 2 CPU
threads): val mIoU ≈ 0.5 after 200–600 iterations (sky and grass ≈ 0.97 IoU, the three shapes
0.1–0.35, they must be told apart by geometry), i.e. within 1–3 CPU minutes, with room left above.
Doubling the training set did not change that at this budget, so 64 images keep first-use
generation to about a second (~2.5 MB); 16 val images keep evaluation to seconds.

The dataset is written in the folder layout of :mod:`denseclip.data.folder`, atomically: into a
temporary sibling folder, completed by a marker file (``COMPLETE.json``, holding the generation
parameters), then renamed into place, so a crash never leaves a half dataset that looks complete.

``synthetic_seg_train`` / ``synthetic_seg_val`` are registered by :func:`register_synthetic` with
their metadata at once; the data is generated on first use into
``$DENSECLIP_DATASETS/synthetic_seg`` (default ``~/.cache/denseclip/datasets/synthetic_seg``).

Detection: the same images with COCO instance annotations for the three shape classes
(``synthetic_det_{train,val}``, COCO folder layout in ``$DENSECLIP_DATASETS/synthetic_det``).
An instance's mask is the part of its shape left visible by the shapes painted after it (pixels
at least half covered), as run-length-encoded COCO segmentation; its box encloses that mask;
remnants smaller than 16 pixels are not annotated (the last shape painted is always whole, so
every image has an instance). Defaults: 512 train / 64 val images (about 6 s and 21 MB on first
use). Detection needs more images than segmentation: with 64 the tiny RetinaNet overfits (box AP
on 16 val images peaks at about 11 after 200 iterations, then drops), with 512 it reaches about
40 after 1200 iterations at batch 8 (about 5 CPU minutes). The first 64 images are the
segmentation dataset's.

CLI: ``python -m denseclip.data.synthetic OUT_DIR [--layout {segmentation,detection}]
[--num-train N] [--num-val N] [--size H W] [--seed S]``.
"""

import argparse
import functools
import json
import os
import shutil
import tempfile
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .folder import (
    IGNORE_LABEL,
    SPLITS,
    coco_instances_path,
    detection_metadata,
    load_segmentation_split,
    segmentation_metadata,
)

__all__ = [
    "BUILTIN_SEGMENTATION",
    "STYLES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_COLORS",
    "SYNTHETIC_DATASET_NAMES",
    "SYNTHETIC_DET_CLASSES",
    "SYNTHETIC_DET_DATASET_NAMES",
    "generate_instances",
    "generate_sample",
    "register_synthetic",
    "register_synthetic_detection",
    "synthetic_detection_root",
    "synthetic_root",
    "write_synthetic_detection",
    "write_synthetic_segmentation",
]

# Each name is a single CLIP BPE token.
SYNTHETIC_CLASSES = ("sky", "grass", "circle", "square", "triangle")
SYNTHETIC_DATASET_NAMES = tuple(f"synthetic_seg_{split}" for split in SPLITS)
#: RGB colours of the classes in pictures: blue sky, green grass, then red, yellow and purple.
SYNTHETIC_COLORS = [[70, 130, 180], [60, 160, 60], [230, 25, 75], [255, 225, 25], [145, 30, 180]]
MARKER_NAME = "COMPLETE.json"
_GENERATOR_VERSION = 1
_SKY, _GRASS, _CIRCLE, _SQUARE, _TRIANGLE = range(len(SYNTHETIC_CLASSES))
_SHAPES = [_CIRCLE, _SQUARE, _TRIANGLE]
# The shapes are the detection classes; COCO category ids 1, 2, 3.
SYNTHETIC_DET_CLASSES = SYNTHETIC_CLASSES[_CIRCLE:]
SYNTHETIC_DET_CATEGORIES = tuple(enumerate(SYNTHETIC_DET_CLASSES, start=1))
SYNTHETIC_DET_DATASET_NAMES = tuple(f"synthetic_det_{split}" for split in SPLITS)
MIN_INSTANCE_AREA = 16
#: Scene styles: "overlapping" (1–4 shapes painted over each other; the default) and "apart"
#: (3–8 shapes that never touch, so each is seen whole).
STYLES = ("overlapping", "apart")
_APART_SIZES = (0.1, 0.2)
_APART_GAP = 2.0
_APART_TRIES = 20
#: A shape: class id, centre (x, y) and circumradius in pixels.
Placement = Tuple[int, Tuple[float, float], float]
#: The built-in segmentation datasets: name prefix (and folder under $DENSECLIP_DATASETS) →
#: arguments of :func:`write_synthetic_segmentation`. ``synthetic_seg`` is small and quick for
#: tests and tiny configs; ``synthetic_demo`` is the demo's (configs/Synthetic/denseclip_fpn_demo.py).
BUILTIN_SEGMENTATION = {
    "synthetic_seg": {},
    "synthetic_demo": {"num_train": 1024, "num_val": 64, "style": "apart"},
}
# Circumradius factors giving a square and an equilateral triangle the area of the circle, so
# that the three shape classes cover similar pixel counts.
_AREA_MATCHING_RADIUS = {
    _CIRCLE: 1.0,
    _SQUARE: (np.pi / 2) ** 0.5,
    _TRIANGLE: (np.pi / 1.299) ** 0.5,
}


def _hsv_to_bgr(hsv: Sequence[float]) -> np.ndarray:
    """One OpenCV HSV colour (H in 0..179, S and V in 0..255) → BGR float32 (3,)."""
    pixel = np.clip(np.array([[hsv]], dtype=np.float32), 0, 255).astype(np.uint8)
    return cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sky above a wavy horizon, grass below. Returns BGR float32 (H, W, 3) and labels (H, W)."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    horizon = height * rng.uniform(0.3, 0.7) + height * rng.uniform(0.0, 0.08) * np.sin(
        2 * np.pi * rng.uniform(0.5, 2.5) * xs / width + rng.uniform(0, 2 * np.pi)
    )
    is_sky = ys < horizon

    top = _hsv_to_bgr((rng.uniform(95, 115), rng.uniform(80, 200), rng.uniform(150, 255)))
    bottom = _hsv_to_bgr((rng.uniform(95, 115), rng.uniform(20, 90), rng.uniform(200, 255)))
    t = (ys / max(height - 1, 1))[..., None]
    sky = top * (1 - t) + bottom * t + rng.normal(0, 2, (height, width, 1))

    base = _hsv_to_bgr((rng.uniform(35, 70), rng.uniform(100, 230), rng.uniform(70, 200)))
    streaks = cv2.blur(rng.normal(0, 1, (height, width)).astype(np.float32), (1, 7))
    grass = base + (rng.uniform(30, 60) * streaks)[..., None]

    image = np.where(is_sky[..., None], sky, grass).astype(np.float32)
    labels = np.where(is_sky, _SKY, _GRASS).astype(np.uint8)
    return image, labels


def _shape_polygon(
    rng: np.random.Generator, kind: int, center: Tuple[float, float], radius: float
) -> np.ndarray:
    """Vertices (N, 2) float of a rotated square or a jittered triangle around ``center``."""
    corners = 4 if kind == _SQUARE else 3
    angles = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(corners) / corners
    if kind == _TRIANGLE:
        angles = angles + rng.uniform(-0.25, 0.25, corners)
    return np.stack([center[0] + radius * np.cos(angles), center[1] + radius * np.sin(angles)], 1)


def _random_geometry(
    rng: np.random.Generator, kind: int, height: int, width: int, sizes: Tuple[float, float]
) -> Placement:
    """A shape of class ``kind`` at a random centre, with the area of a disc whose radius is a
    random fraction in ``sizes`` of the image side."""
    radius = rng.uniform(*sizes) * min(height, width) * _AREA_MATCHING_RADIUS[kind]
    center = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
    return kind, center, radius


def _random_placement(rng: np.random.Generator, height: int, width: int) -> Placement:
    """A shape of a random class ("overlapping" style)."""
    return _random_geometry(rng, int(rng.choice(_SHAPES)), height, width, (0.08, 0.2))


def _apart_placements(rng: np.random.Generator, height: int, width: int) -> List[Placement]:
    """3–8 shapes of random classes whose circumscribed circles keep ``_APART_GAP`` pixels apart.

    Each gets ``_APART_TRIES`` random positions and sizes and is left out if none fits (more
    often a triangle, whose circumradius is the largest: circles, squares and triangles cover
    about 10, 9 and 8 % of the pixels)."""
    placements: List[Placement] = []
    for kind in rng.choice(_SHAPES, size=rng.integers(3, 9)):
        for _ in range(_APART_TRIES):
            _, center, radius = candidate = _random_geometry(
                rng, int(kind), height, width, _APART_SIZES
            )
            if all(
                np.hypot(center[0] - x, center[1] - y) > radius + other + _APART_GAP
                for _, (x, y), other in placements
            ):
                placements.append(candidate)
                break
    return placements


def _shape_coverage(
    rng: np.random.Generator, placement: Placement, height: int, width: int
) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 in [0, 1] of a shape (a random rotation)."""
    kind, center, radius = placement
    shift = 4  # sub-pixel precision for cv2 drawing
    mask = np.zeros((height, width), np.uint8)
    if kind == _CIRCLE:
        point = tuple(int(round(c * 2**shift)) for c in center)
        cv2.circle(mask, point, int(round(radius * 2**shift)), 255, -1, cv2.LINE_AA, shift)
    else:
        polygon = np.round(_shape_polygon(rng, kind, center, radius) * 2**shift).astype(np.int32)
        cv2.fillPoly(mask, [polygon], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0


def _paint_shape(
    rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, placement: Placement
) -> Tuple[int, np.ndarray]:
    """Draw one shape in place: a random colour with a shading gradient, AA edges.

    Returns its class id and its coverage (H, W) float32 in [0, 1]."""
    height, width = labels.shape
    kind = placement[0]
    coverage = _shape_coverage(rng, placement, height, width)
    color = _hsv_to_bgr((rng.uniform(0, 180), rng.uniform(120, 255), rng.uniform(120, 255)))
    direction = rng.normal(size=2)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    shading = (xs * direction[0] + ys * direction[1]) / (
        np.linalg.norm(direction) * max(height, width)
    )
    fill = color + (rng.uniform(20, 50) * shading)[..., None]
    alpha = coverage[..., None]
    image[:] = image * (1 - alpha) + fill * alpha
    labels[coverage >= 1.0] = kind
    labels[(coverage > 0) & (coverage < 1.0)] = IGNORE_LABEL
    return kind, coverage


def _render(
    seed: int, split_index: int, index: int, image_size: Tuple[int, int], style: str = STYLES[0]
) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One image, its labels and its shapes ``(class id, coverage)`` in painting order."""
    _check_style(style)
    rng = np.random.default_rng([seed, split_index, index])
    height, width = image_size
    image, labels = _background(rng, height, width)
    if style == "apart":
        placements = _apart_placements(rng, height, width)
    else:  # lazily: each shape is placed right before it is painted (the generator's v1 order)
        count = rng.integers(1, 5)
        placements = (_random_placement(rng, height, width) for _ in range(count))
    shapes = [_paint_shape(rng, image, labels, placement) for placement in placements]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels, shapes


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style: expected one of {STYLES}, got {style!r}")


def generate_sample(
    seed: int, split_index: int, index: int, image_size: Tuple[int, int], style: str = STYLES[0]
) -> Tuple[np.ndarray, np.ndarray]:
    """One image and its labels, a pure function of its arguments (``style``: see
    :data:`STYLES`).

    Returns a BGR uint8 image (H, W, 3) and uint8 labels (H, W) in 0..K-1 or 255.
    """
    image, labels, _ = _render(seed, split_index, index, image_size, style)
    return image, labels


def generate_instances(
    seed: int, split_index: int, index: int, image_size: Tuple[int, int]
) -> Tuple[np.ndarray, List[dict]]:
    """The image of :func:`generate_sample` and its shape instances.

    Returns a BGR uint8 image (H, W, 3) and, in painting order, instances ``{"category_id":
    1..3, "mask": bool (H, W)}``: the pixels at least half covered by the shape and less than
    half covered by every shape painted after it; instances under
    :data:`MIN_INSTANCE_AREA` pixels are left out.
    """
    image, _, shapes = _render(seed, split_index, index, image_size)
    instances = []
    for position, (kind, coverage) in enumerate(shapes):
        visible = coverage >= 0.5
        for _, later in shapes[position + 1 :]:
            visible &= later < 0.5
        if visible.sum() >= MIN_INSTANCE_AREA:
            instances.append({"category_id": kind - _CIRCLE + 1, "mask": visible})
    return image, instances


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
    with open(os.path.join(root, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump(params, f, indent=1)


def _write_files(root: str, params: dict) -> None:
    """Write the folder layout and finally the marker into ``root`` (an empty folder)."""
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
    with open(os.path.join(root, MARKER_NAME), "w", encoding="utf-8") as f:
        json.dump(params, f, indent=1)


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
    ``style``: see :data:`STYLES`.
    """
    _check_style(style)
    root = os.path.abspath(os.path.expanduser(root))
    params = {
        "generator_version": _GENERATOR_VERSION,
        "classes": list(SYNTHETIC_CLASSES),
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
    }
    if style != STYLES[0]:  # markers written before styles existed stay valid
        params["style"] = style
    return _publish(root, params, _write_files)


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


def _datasets_dir() -> str:
    base = os.environ.get("DENSECLIP_DATASETS") or "~/.cache/denseclip/datasets"
    return os.path.expanduser(base)


def synthetic_root(prefix: str = "synthetic_seg") -> str:
    """Where a built-in segmentation dataset lives: ``$DENSECLIP_DATASETS/<prefix>`` (read now);
    ``prefix``: ``synthetic_seg`` or ``synthetic_demo``."""
    return os.path.join(_datasets_dir(), prefix)


def synthetic_detection_root() -> str:
    """Where the built-in detection dataset lives: ``$DENSECLIP_DATASETS/synthetic_det`` (read
    now)."""
    return os.path.join(_datasets_dir(), "synthetic_det")


def _load_builtin(prefix: str, split: str) -> List[dict]:
    root = write_synthetic_segmentation(synthetic_root(prefix), **BUILTIN_SEGMENTATION[prefix])
    return load_segmentation_split(root, split)


def register_synthetic() -> None:
    """Register ``synthetic_seg_{train,val}`` and ``synthetic_demo_{train,val}``
    (:data:`BUILTIN_SEGMENTATION`): metadata now, data generated on first load."""
    for prefix in BUILTIN_SEGMENTATION:
        for split in SPLITS:
            DatasetCatalog.register(
                f"{prefix}_{split}", functools.partial(_load_builtin, prefix, split)
            )
            metadata = segmentation_metadata(SYNTHETIC_CLASSES)
            metadata["stuff_colors"] = SYNTHETIC_COLORS
            MetadataCatalog.get(f"{prefix}_{split}").set(**metadata)


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
    """Register ``synthetic_det_{train,val}``: metadata now, data generated on first load (which
    also sets ``json_file`` and ``image_root``)."""
    for split, name in zip(SPLITS, SYNTHETIC_DET_DATASET_NAMES):
        DatasetCatalog.register(name, functools.partial(_load_builtin_detection, split, name))
        MetadataCatalog.get(name).set(
            evaluator_type="coco", **detection_metadata(SYNTHETIC_DET_CATEGORIES)
        )


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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


if __name__ == "__main__":
    main()
