"""A small synthetic segmentation dataset ("shapes in a landscape") for CPU demos and tests.

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

CLI: ``python -m denseclip.data.synthetic OUT_DIR [--num-train N] [--num-val N] [--size H W]
[--seed S]``.
"""

import argparse
import functools
import json
import os
import shutil
import tempfile
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from .folder import IGNORE_LABEL, SPLITS, load_segmentation_split, segmentation_metadata

__all__ = [
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_DATASET_NAMES",
    "generate_sample",
    "register_synthetic",
    "synthetic_root",
    "write_synthetic_segmentation",
]

# Each name is a single CLIP BPE token.
SYNTHETIC_CLASSES = ("sky", "grass", "circle", "square", "triangle")
SYNTHETIC_DATASET_NAMES = tuple(f"synthetic_seg_{split}" for split in SPLITS)
MARKER_NAME = "COMPLETE.json"
_GENERATOR_VERSION = 1
_SKY, _GRASS, _CIRCLE, _SQUARE, _TRIANGLE = range(len(SYNTHETIC_CLASSES))
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


def _shape_coverage(rng: np.random.Generator, kind: int, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 in [0, 1] of one random shape of class ``kind``."""
    shift = 4  # sub-pixel precision for cv2 drawing
    radius = rng.uniform(0.08, 0.2) * min(height, width) * _AREA_MATCHING_RADIUS[kind]
    center = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height)
    mask = np.zeros((height, width), np.uint8)
    if kind == _CIRCLE:
        point = tuple(int(round(c * 2**shift)) for c in center)
        cv2.circle(mask, point, int(round(radius * 2**shift)), 255, -1, cv2.LINE_AA, shift)
    else:
        polygon = np.round(_shape_polygon(rng, kind, center, radius) * 2**shift).astype(np.int32)
        cv2.fillPoly(mask, [polygon], 255, cv2.LINE_AA, shift)
    return mask.astype(np.float32) / 255.0


def _paint_shape(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray) -> None:
    """Draw one random shape in place: a random colour with a shading gradient, AA edges."""
    height, width = labels.shape
    kind = int(rng.choice([_CIRCLE, _SQUARE, _TRIANGLE]))
    coverage = _shape_coverage(rng, kind, height, width)
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


def generate_sample(
    seed: int, split_index: int, index: int, image_size: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """One image and its labels, a pure function of its arguments.

    Returns a BGR uint8 image (H, W, 3) and uint8 labels (H, W) in 0..K-1 or 255.
    """
    rng = np.random.default_rng([seed, split_index, index])
    height, width = image_size
    image, labels = _background(rng, height, width)
    for _ in range(rng.integers(1, 5)):
        _paint_shape(rng, image, labels)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels


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
                params["seed"], split_index, index, tuple(params["image_size"])
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
) -> str:
    """Write the synthetic dataset to ``root`` (folder layout); return its absolute path.

    Deterministic: the same arguments give byte-identical files. A no-op if ``root`` already holds
    a complete dataset with the same parameters; raises ``FileExistsError`` if it holds anything
    else. Safe against crashes and concurrent writers (temp folder + marker + rename).
    """
    root = os.path.abspath(os.path.expanduser(root))
    params = {
        "generator_version": _GENERATOR_VERSION,
        "classes": list(SYNTHETIC_CLASSES),
        "num_train": int(num_train),
        "num_val": int(num_val),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "seed": int(seed),
    }
    if _check_existing(root, params):
        return root
    os.makedirs(os.path.dirname(root), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.tmp-", dir=os.path.dirname(root))
    try:
        _write_files(tmp, params)
        try:
            os.rename(tmp, root)
        except OSError:  # another process published first: fine if it wrote the same dataset
            if not _check_existing(root, params):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def synthetic_root() -> str:
    """Where the built-in dataset lives: ``$DENSECLIP_DATASETS/synthetic_seg`` (read now)."""
    base = os.environ.get("DENSECLIP_DATASETS") or "~/.cache/denseclip/datasets"
    return os.path.join(os.path.expanduser(base), "synthetic_seg")


def _load_builtin(split: str) -> List[dict]:
    return load_segmentation_split(write_synthetic_segmentation(synthetic_root()), split)


def register_synthetic() -> None:
    """Register ``synthetic_seg_{train,val}``: metadata now, data generated on first load."""
    for split, name in zip(SPLITS, SYNTHETIC_DATASET_NAMES):
        DatasetCatalog.register(name, functools.partial(_load_builtin, split))
        MetadataCatalog.get(name).set(**segmentation_metadata(SYNTHETIC_CLASSES))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", metavar="OUT_DIR")
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = write_synthetic_segmentation(
        args.out_dir, args.num_train, args.num_val, tuple(args.size), args.seed
    )
    print(f"synthetic dataset ({', '.join(SYNTHETIC_CLASSES)}) at {root}")


if __name__ == "__main__":
    main()
