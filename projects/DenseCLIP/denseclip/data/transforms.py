"""mmseg 0.19 / mmdet 2.17 data pipelines as detectron2 augmentations.

mmseg's ADE20K training pipeline (after loading, with ``reduce_zero_label``)::

    Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0))   → RandomRatioResize
    RandomCrop(crop_size=(512, 512), cat_max_ratio=0.75)    → RandomCropCatMaxRatio
    RandomFlip(prob=0.5)                                    → detectron2's RandomFlip
    PhotoMetricDistortion()                                 → PhotoMetricDistortion
    Normalize, Pad(size=(512, 512), seg_pad_val=255)        → the model (normalisation, padding)

mmdet's COCO training pipeline::

    Resize(img_scale=(1333, 800), keep_ratio=True)          → KeepRatioResize
    RandomFlip(flip_ratio=0.5)                              → detectron2's RandomFlip
    Normalize, Pad(size_divisor=32)                         → the model

Both test pipelines resize with ``Resize(img_scale=scale, keep_ratio=True)``
(:class:`KeepRatioResize`). The augmentations draw from numpy's global RNG in the order and
with the calls mmseg / mmdet use (detectron2's ``RandomFlip`` draws one uniform number, as
mmseg's ``np.random.rand()`` and mmdet's ``np.random.choice`` do), so that one RNG state gives
the official pipeline's output.

Both resizes are mmcv's ``imrescale``: the output size is rounded as ``int(x·factor + 0.5)``
and, with ``backend="opencv"`` (the official pipelines), images are resized by OpenCV's bilinear
filter (no antialiasing) and segmentation maps by OpenCV's nearest neighbour, exactly as mmcv's
``imresize`` does. ``backend="pil"`` uses detectron2's :class:`ResizeTransform` instead (PIL's
antialiased bilinear for uint8 images, PIL nearest for segmentation): same sizes, other pixels.

Images are HWC uint8 in the channel order given at construction (detectron2's DatasetMapper
passes the config's ``image_format``; ours is "RGB"); segmentation maps are HW class ids (uint8,
or float64 as detectron2's DatasetMapper reads them).
"""

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data.transforms import (
    Augmentation,
    CropTransform,
    RandomFlip,
    ResizeTransform,
    Transform,
)
from PIL import Image

__all__ = [
    "KeepRatioResize",
    "OpenCVResizeTransform",
    "PhotoMetricDistortion",
    "PhotoMetricTransform",
    "RESIZE_BACKENDS",
    "RandomCropCatMaxRatio",
    "RandomRatioResize",
    "ade20k_test_augmentations",
    "ade20k_train_augmentations",
    "coco_test_augmentations",
    "coco_train_augmentations",
    "mmcv_rescale_size",
    "resize_transform",
]

#: "opencv": mmcv's ``imresize`` (the official pipelines); "pil": detectron2's ResizeTransform.
RESIZE_BACKENDS = ("opencv", "pil")


def mmcv_rescale_size(height: int, width: int, scale: Sequence[float]) -> Tuple[int, int]:
    """(new_height, new_width) of an image rescaled into ``scale`` keeping its aspect ratio, as
    mmcv's ``rescale_size``: factor ``min(max(scale) / long edge, min(scale) / short edge)``,
    sizes ``int(x·factor + 0.5)``. A side that would round to 0 (only for aspect ratios beyond
    the scale's, where mmcv fails) is kept at 1."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(int(height * factor + 0.5), 1), max(int(width * factor + 0.5), 1)


class OpenCVResizeTransform(Transform):
    """Resize h×w → new_h×new_w like mmcv's ``imresize`` (``cv2.resize``): images bilinear
    (``cv2.INTER_LINEAR``, no antialiasing; any dtype OpenCV takes, channels kept),
    segmentation maps nearest (``cv2.INTER_NEAREST``); coordinates scaled by new/old per axis.
    """

    def __init__(self, h: int, w: int, new_h: int, new_w: int):
        super().__init__()
        self._set_attributes(locals())

    def _resize(self, array: np.ndarray, interpolation: int) -> np.ndarray:
        if array.shape[:2] != (self.h, self.w):
            raise ValueError(
                f"OpenCVResizeTransform from {self.h}x{self.w}: got an array of {array.shape}"
            )
        resized = cv2.resize(array, (self.new_w, self.new_h), interpolation=interpolation)
        return resized.reshape(resized.shape[:2] + array.shape[2:])  # cv2 drops a last dim of 1

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._resize(img, cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._resize(segmentation, cv2.INTER_NEAREST)

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        coords[:, 0] = coords[:, 0] * (self.new_w * 1.0 / self.w)
        coords[:, 1] = coords[:, 1] * (self.new_h * 1.0 / self.h)
        return coords

    def inverse(self) -> "OpenCVResizeTransform":
        return OpenCVResizeTransform(self.new_h, self.new_w, self.h, self.w)


def resize_transform(h: int, w: int, new_h: int, new_w: int, backend: str = "opencv") -> Transform:
    """The resize of ``backend`` (see :data:`RESIZE_BACKENDS`) from h×w to new_h×new_w."""
    if backend == "opencv":
        return OpenCVResizeTransform(h, w, new_h, new_w)
    if backend == "pil":
        return ResizeTransform(h, w, new_h, new_w, Image.BILINEAR)
    raise ValueError(f"resize backend: expected one of {RESIZE_BACKENDS}, got {backend!r}")


def _check_backend(backend: str) -> None:
    if backend not in RESIZE_BACKENDS:
        raise ValueError(f"backend: expected one of {RESIZE_BACKENDS}, got {backend!r}")


class KeepRatioResize(Augmentation):
    """mmseg / mmdet ``Resize(img_scale=scale, keep_ratio=True)``: the image rescaled to fit
    ``scale`` (:func:`mmcv_rescale_size`), e.g. (2048, 512) for ADE20K tests, (1333, 800) for COCO.

    Args:
        scale: (long, short) bound; order does not matter (max/min are taken).
        backend: "opencv" (mmcv, official) or "pil" (detectron2), see :data:`RESIZE_BACKENDS`.
    """

    def __init__(self, scale: Tuple[int, int], backend: str = "opencv"):
        super().__init__()
        _check_backend(backend)
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        height, width = image.shape[:2]
        return resize_transform(
            height, width, *mmcv_rescale_size(height, width, self.scale), self.backend
        )


class RandomRatioResize(Augmentation):
    """mmseg ``Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)``.

    Draws ``r ~ U[ratio_range)`` (one ``np.random.random_sample()``, as mmseg), target scale
    ``(int(scale[0]·r), int(scale[1]·r))``, then resizes as :class:`KeepRatioResize`.
    """

    def __init__(
        self,
        scale: Tuple[int, int] = (2048, 512),
        ratio_range: Tuple[float, float] = (0.5, 2.0),
        backend: str = "opencv",
    ):
        """
        Args:
            scale: (long, short) target at ratio 1; order does not matter (max/min are taken).
            ratio_range: (min, max) of the random ratio; ``(1.0, 1.0)`` gives a fixed scale.
            backend: "opencv" (mmcv, official) or "pil" (detectron2).
        """
        super().__init__()
        _check_backend(backend)
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> Transform:
        height, width = image.shape[:2]
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        new_height, new_width = mmcv_rescale_size(height, width, target)
        return resize_transform(height, width, new_height, new_width, self.backend)


def _convert(array: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """mmseg's ``convert``: ``clip(array·alpha + beta, 0, 255)`` as uint8 (truncating)."""
    return np.clip(array.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


class PhotoMetricTransform(Transform):
    """The deterministic part of :class:`PhotoMetricDistortion`; a parameter of None skips it.

    Image: HWC uint8 in ``image_format`` ("RGB" or "BGR"); segmentation and coordinates are left
    unchanged.
    """

    def __init__(
        self,
        brightness_beta: Optional[float],
        contrast_alpha: Optional[float],
        contrast_first: bool,
        saturation_alpha: Optional[float],
        hue_shift: Optional[int],
        image_format: str = "RGB",
    ):
        super().__init__()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format: expected 'RGB' or 'BGR', got {image_format!r}")
        self._set_attributes(locals())

    def _contrast(self, img: np.ndarray) -> np.ndarray:
        return img if self.contrast_alpha is None else _convert(img, alpha=self.contrast_alpha)

    def _in_hsv(self, img: np.ndarray, channel: int, change) -> np.ndarray:
        """Apply ``change`` to one channel of the OpenCV HSV image (H 0..179, S/V 0..255)."""
        to_hsv, from_hsv = (
            (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB)
            if self.image_format == "RGB"
            else (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR)
        )
        hsv = cv2.cvtColor(img, to_hsv)
        hsv[:, :, channel] = change(hsv[:, :, channel])
        return cv2.cvtColor(hsv, from_hsv)

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"PhotoMetricTransform: expected an HxWx3 uint8 image, got {img.shape} {img.dtype}"
            )
        if self.brightness_beta is not None:
            img = _convert(img, beta=self.brightness_beta)
        if self.contrast_first:
            img = self._contrast(img)
        if self.saturation_alpha is not None:
            img = self._in_hsv(img, 1, lambda s: _convert(s, alpha=self.saturation_alpha))
        if self.hue_shift is not None:
            img = self._in_hsv(img, 0, lambda h: (h.astype(np.int64) + self.hue_shift) % 180)
        if not self.contrast_first:
            img = self._contrast(img)
        return img

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation


class PhotoMetricDistortion(Augmentation):
    """mmseg 0.19 ``PhotoMetricDistortion``, drawing from numpy's global RNG in mmseg's order.

    1. brightness: with probability 0.5, ``+U(-brightness_delta, brightness_delta)``;
    2. ``mode = randint(2)``; if mode is 1, contrast now: with probability 0.5,
       ``×U(contrast_range)``;
    3. saturation: with probability 0.5, HSV S ``×U(saturation_range)``;
    4. hue: with probability 0.5, HSV H ``+randint(-hue_delta, hue_delta)`` (upper bound
       excluded, as numpy's) mod 180;
    5. if mode is 0, contrast as in step 2.

    Each "probability 0.5" is one ``np.random.randint(2)`` and each value is drawn right after
    its gate, exactly as mmseg draws them, so that the same RNG state gives mmseg's image. Each
    step clips to 0..255 and truncates to uint8; saturation and hue each convert to OpenCV HSV
    and back. mmseg runs this on BGR images (as loaded by mmcv); pass ``image_format`` so that
    the HSV conversion sees the true colours (RGB and BGR give the same result for the true
    colours).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        image_format: str = "RGB",
    ):
        super().__init__()
        self._init(locals())

    @staticmethod
    def _maybe(sample):
        """``sample()`` if a fair coin (``np.random.randint(2)``, drawn first) says so, else None."""
        return sample() if np.random.randint(2) else None

    def _contrast(self) -> Optional[float]:
        return self._maybe(lambda: np.random.uniform(*self.contrast_range))

    def get_transform(self, image: np.ndarray) -> PhotoMetricTransform:
        delta = self.brightness_delta
        brightness = self._maybe(lambda: np.random.uniform(-delta, delta))
        contrast_first = bool(np.random.randint(2))
        contrast = self._contrast() if contrast_first else None
        saturation = self._maybe(lambda: np.random.uniform(*self.saturation_range))
        hue = self._maybe(lambda: int(np.random.randint(-self.hue_delta, self.hue_delta)))
        if not contrast_first:
            contrast = self._contrast()
        return PhotoMetricTransform(
            brightness, contrast, contrast_first, saturation, hue, self.image_format
        )


class RandomCropCatMaxRatio(Augmentation):
    """mmseg 0.19 ``RandomCrop(crop_size, cat_max_ratio, ignore_index)``.

    The crop is ``min(crop_size, image size)`` per side at a random offset (``np.random.randint``
    for the row, then the column). With ``cat_max_ratio < 1`` the offset is redrawn up to 10 times
    while the crop's labels (``ignore_index`` left out) have fewer than two classes or one class
    covering ``≥ cat_max_ratio`` of them; the last redraw is kept unchecked. That is up to 11
    draws, as mmseg makes, where detectron2's ``RandomCrop_CategoryAreaConstraint`` makes at
    most 10: the crops have the same distribution, but only this one consumes numpy's RNG as
    mmseg does.
    """

    def __init__(
        self,
        crop_size: Tuple[int, int],
        cat_max_ratio: float = 1.0,
        ignore_index: int = 255,
    ):
        """
        Args:
            crop_size: (h, w) of the crop.
            cat_max_ratio: largest share one class may cover; 1 disables the check.
            ignore_index: the label left out of the check.
        """
        super().__init__()
        self._init(locals())

    def _random_window(self, height: int, width: int) -> Tuple[int, int, int, int]:
        crop_h, crop_w = min(self.crop_size[0], height), min(self.crop_size[1], width)
        y0 = np.random.randint(0, height - crop_h + 1)
        x0 = np.random.randint(0, width - crop_w + 1)
        return y0, x0, crop_h, crop_w

    def _acceptable(self, labels: np.ndarray) -> bool:
        values, counts = np.unique(labels, return_counts=True)
        counts = counts[values != self.ignore_index]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def get_transform(self, image: np.ndarray, sem_seg: Optional[np.ndarray]) -> CropTransform:
        height, width = image.shape[:2]
        y0, x0, crop_h, crop_w = self._random_window(height, width)
        if self.cat_max_ratio < 1.0:
            if sem_seg is None:
                raise ValueError("RandomCropCatMaxRatio with cat_max_ratio < 1 needs sem_seg")
            for _ in range(10):
                if self._acceptable(sem_seg[y0 : y0 + crop_h, x0 : x0 + crop_w]):
                    break
                y0, x0, crop_h, crop_w = self._random_window(height, width)
        return CropTransform(x0, y0, crop_w, crop_h)


def ade20k_train_augmentations(
    crop_size: int = 512,
    scale: Tuple[int, int] = (2048, 512),
    ratio_range: Tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    image_format: str = "RGB",
    resize_backend: str = "opencv",
) -> List[Augmentation]:
    """mmseg's ADE20K training augmentations, in mmseg's order.

    Resize by a random ratio, crop ``crop_size``² (smaller images are cropped to their size; the
    model pads to ``crop_size``, labels with 255) redrawn up to 10 times until no class other
    than 255 covers ≥ ``cat_max_ratio``, horizontal flip with probability 0.5, photometric
    distortion. ``resize_backend``: "opencv" (mmcv) or "pil" (detectron2's resize).
    """
    return [
        RandomRatioResize(scale=scale, ratio_range=ratio_range, backend=resize_backend),
        RandomCropCatMaxRatio((crop_size, crop_size), cat_max_ratio=cat_max_ratio),
        RandomFlip(prob=0.5, horizontal=True, vertical=False),
        PhotoMetricDistortion(image_format=image_format),
    ]


def ade20k_test_augmentations(
    scale: Tuple[int, int] = (2048, 512), resize_backend: str = "opencv"
) -> List[Augmentation]:
    """mmseg's ADE20K test resize (``img_scale=scale, keep_ratio=True``): short edge to
    ``min(scale)`` unless the long edge would exceed ``max(scale)``; mmcv's rounding and, with
    ``resize_backend="opencv"``, mmcv's OpenCV resize.
    """
    return [KeepRatioResize(scale, backend=resize_backend)]


def coco_train_augmentations(
    scale: Tuple[int, int] = (1333, 800), resize_backend: str = "opencv"
) -> List[Augmentation]:
    """mmdet's COCO training augmentations: ``Resize(img_scale=scale, keep_ratio=True)`` then
    ``RandomFlip(flip_ratio=0.5)``. Boxes follow as in mmdet: scaled per axis by new/old size,
    clipped to the image, flipped as ``x' = W - x``."""
    return [
        KeepRatioResize(scale, backend=resize_backend),
        RandomFlip(prob=0.5, horizontal=True, vertical=False),
    ]


def coco_test_augmentations(
    scale: Tuple[int, int] = (1333, 800), resize_backend: str = "opencv"
) -> List[Augmentation]:
    """mmdet's COCO test resize: ``Resize(img_scale=scale, keep_ratio=True)``."""
    return [KeepRatioResize(scale, backend=resize_backend)]
