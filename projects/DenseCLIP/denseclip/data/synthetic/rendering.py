"""Synthetic pictures: shapes in a landscape, drawn in memory (no files).

A "sky" (vertical gradient in blues) above a wavy horizon and "grass" (green, vertically streaked
noise) below, with "circle", "square" (rotated) and "triangle" shapes on top. Every shape gets its
own colour of any hue, so that colour does not give its class away (shapes differ by geometry,
the background classes by colour and texture), a shading gradient and anti-aliased edges. Edge
pixels only partly covered are labelled 255 (ignore), as in PASCAL VOC, so that training always
exercises the ignore path.

Every picture is a pure function of ``(seed, split_index, index, image_size, style)``.
"""

from typing import List, Sequence, Tuple

import cv2
import numpy as np

from ..folder import IGNORE_LABEL

__all__ = [
    "MIN_INSTANCE_AREA",
    "STYLES",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_COLORS",
    "SYNTHETIC_DET_CATEGORIES",
    "SYNTHETIC_DET_CLASSES",
    "check_style",
    "generate_instances",
    "generate_sample",
]

# Each name is a single CLIP BPE token.
SYNTHETIC_CLASSES = ("sky", "grass", "circle", "square", "triangle")
#: RGB colours of the classes in pictures: blue sky, green grass, then red, yellow and purple.
SYNTHETIC_COLORS = [[70, 130, 180], [60, 160, 60], [230, 25, 75], [255, 225, 25], [145, 30, 180]]
_SKY, _GRASS, _CIRCLE, _SQUARE, _TRIANGLE = range(len(SYNTHETIC_CLASSES))
_SHAPES = [_CIRCLE, _SQUARE, _TRIANGLE]
# The shapes are the detection classes; COCO category ids 1, 2, 3.
SYNTHETIC_DET_CLASSES = SYNTHETIC_CLASSES[_CIRCLE:]
SYNTHETIC_DET_CATEGORIES = tuple(enumerate(SYNTHETIC_DET_CLASSES, start=1))
#: Visible parts of shapes smaller than this many pixels are not detection instances.
MIN_INSTANCE_AREA = 16
#: Scene styles: "overlapping" (1–4 shapes painted over each other; the default) and "apart"
#: (3–8 shapes that never touch, so each is seen whole).
STYLES = ("overlapping", "apart")
_APART_SIZES = (0.1, 0.2)
_APART_GAP = 2.0
_APART_TRIES = 20
#: A shape: class id, centre (x, y) and circumradius in pixels.
Placement = Tuple[int, Tuple[float, float], float]
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
    often a triangle, whose circumradius is the largest)."""
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
    check_style(style)
    rng = np.random.default_rng([seed, split_index, index])
    height, width = image_size
    image, labels = _background(rng, height, width)
    if style == "apart":
        placements = _apart_placements(rng, height, width)
    else:  # lazily: the random draws of placing and painting alternate, shape by shape
        count = rng.integers(1, 5)
        placements = (_random_placement(rng, height, width) for _ in range(count))
    shapes = [_paint_shape(rng, image, labels, placement) for placement in placements]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), labels, shapes


def check_style(style: str) -> None:
    """Raise ``ValueError`` unless ``style`` is one of :data:`STYLES`."""
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
