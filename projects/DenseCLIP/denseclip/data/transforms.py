"""mmseg 0.19's ADE20K pipeline as detectron2 augmentations.

mmseg's training pipeline (after loading, with ``reduce_zero_label``)::

    Resize(img_scale=(2048, 512), ratio_range=(0.5, 2.0))   → RandomRatioResize
    RandomCrop(crop_size=(512, 512), cat_max_ratio=0.75)    → RandomCrop_CategoryAreaConstraint
    RandomFlip(prob=0.5)                                    → RandomFlip
    PhotoMetricDistortion()                                 → PhotoMetricDistortion
    Normalize, Pad(size=(512, 512), seg_pad_val=255)        → the model (normalisation, padding)

and its test pipeline resizes with ``img_scale=(2048, 512), keep_ratio=True``, which is
``ResizeShortestEdge(512, max_size=2048)``.

Images are HWC uint8 in the channel order given at construction (detectron2's DatasetMapper
passes the config's ``image_format``; ours is "RGB"); segmentation maps are HW uint8.
"""

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data.transforms import (
    Augmentation,
    RandomCrop_CategoryAreaConstraint,
    RandomFlip,
    ResizeShortestEdge,
    ResizeTransform,
    Transform,
)
from PIL import Image

__all__ = [
    "PhotoMetricDistortion",
    "PhotoMetricTransform",
    "RandomRatioResize",
    "ade20k_test_augmentations",
    "ade20k_train_augmentations",
]


class RandomRatioResize(Augmentation):
    """mmseg ``Resize(img_scale=scale, ratio_range=ratio_range, keep_ratio=True)``.

    Draws ``r ~ U[ratio_range)``, target scale ``(int(scale[0]·r), int(scale[1]·r))`` and resizes
    by ``min(long_target / long_edge, short_target / short_edge)`` with sizes rounded as
    ``int(x·factor + 0.5)``. Images bilinear, segmentation nearest (detectron2's ResizeTransform).
    """

    def __init__(
        self,
        scale: Tuple[int, int] = (2048, 512),
        ratio_range: Tuple[float, float] = (0.5, 2.0),
        interp: int = Image.BILINEAR,
    ):
        """
        Args:
            scale: (long, short) target at ratio 1; order does not matter (max/min are taken).
            ratio_range: (min, max) of the random ratio; ``(1.0, 1.0)`` gives a fixed scale.
            interp: PIL interpolation for images.
        """
        super().__init__()
        self._init(locals())

    @staticmethod
    def get_output_shape(height: int, width: int, target: Sequence[float]) -> Tuple[int, int]:
        """(new_height, new_width) of an image rescaled into ``target`` keeping its ratio."""
        factor = min(max(target) / max(height, width), min(target) / min(height, width))
        return int(height * factor + 0.5), int(width * factor + 0.5)

    def get_transform(self, image: np.ndarray) -> ResizeTransform:
        height, width = image.shape[:2]
        low, high = self.ratio_range
        ratio = np.random.random_sample() * (high - low) + low
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        new_height, new_width = self.get_output_shape(height, width, target)
        return ResizeTransform(height, width, new_height, new_width, self.interp)


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
    """mmseg 0.19 ``PhotoMetricDistortion``: each step applied with probability ``prob``.

    1. brightness: ``+U(-brightness_delta, brightness_delta)``;
    2. with probability 0.5 contrast now (``×U(contrast_range)``), otherwise as the last step;
    3. saturation: HSV S ``×U(saturation_range)``;
    4. hue: HSV H ``+randint(-hue_delta, hue_delta)`` (upper bound excluded, as numpy's) mod 180;
    5. contrast, if not done in step 2.

    Each step clips to 0..255 and truncates to uint8; saturation and hue each convert to OpenCV
    HSV and back. mmseg runs this on BGR images (as loaded by mmcv); pass ``image_format`` so that
    the HSV conversion sees the true colours (RGB and BGR give the same result for the true
    colours). ``prob`` is 0.5 in mmseg; 0 turns every step off (identity).
    """

    def __init__(
        self,
        brightness_delta: float = 32,
        contrast_range: Tuple[float, float] = (0.5, 1.5),
        saturation_range: Tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        prob: float = 0.5,
        image_format: str = "RGB",
    ):
        super().__init__()
        self._init(locals())

    def _maybe(self, sample):
        """``sample()`` with probability ``prob``, else None."""
        return sample() if np.random.random_sample() < self.prob else None

    def get_transform(self, image: np.ndarray) -> PhotoMetricTransform:
        delta = self.brightness_delta
        brightness = self._maybe(lambda: np.random.uniform(-delta, delta))
        contrast_first = bool(np.random.randint(2))
        contrast = self._maybe(lambda: np.random.uniform(*self.contrast_range))
        saturation = self._maybe(lambda: np.random.uniform(*self.saturation_range))
        hue = self._maybe(lambda: int(np.random.randint(-self.hue_delta, self.hue_delta)))
        return PhotoMetricTransform(
            brightness, contrast, contrast_first, saturation, hue, self.image_format
        )


def ade20k_train_augmentations(
    crop_size: int = 512,
    scale: Tuple[int, int] = (2048, 512),
    ratio_range: Tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    image_format: str = "RGB",
) -> List[Augmentation]:
    """mmseg's ADE20K training augmentations, in mmseg's order.

    Resize by a random ratio, crop ``crop_size``² (smaller images are cropped to their size; pad
    to ``crop_size`` in the model, labels with 255) retrying up to 10 times until no class other
    than 255 covers ≥ ``cat_max_ratio``, horizontal flip with probability 0.5, photometric
    distortion.
    """
    return [
        RandomRatioResize(scale=scale, ratio_range=ratio_range),
        RandomCrop_CategoryAreaConstraint(
            "absolute",
            (crop_size, crop_size),
            single_category_max_area=cat_max_ratio,
            ignored_category=255,
        ),
        RandomFlip(prob=0.5, horizontal=True, vertical=False),
        PhotoMetricDistortion(image_format=image_format),
    ]


def ade20k_test_augmentations(scale: Tuple[int, int] = (2048, 512)) -> List[Augmentation]:
    """mmseg's ADE20K test resize (``img_scale=scale, keep_ratio=True``): short edge to
    ``min(scale)`` unless the long edge would exceed ``max(scale)``; same rounding as mmcv.
    """
    return [ResizeShortestEdge(short_edge_length=min(scale), max_size=max(scale))]
