"""Reading image files as people have them: phone photos, scans, screenshots.

:func:`read_image` returns what detectron2's ``read_image`` returns (H×W×C uint8 in the asked
format, EXIF orientation applied) for every file that one reads right, and differs where it
does not:

- 16-bit greyscale (PIL modes ``I;16*`` and ``I``, e.g. 16-bit PNG scans) is scaled to 8 bits
  by keeping the high byte (v >> 8), as OpenCV's ``imread`` (and so mmcv, the official code's
  reader) does; detectron2 converts with PIL, which clips every value above 255 to white;
- a file that cannot be decoded (truncated, not an image, unsupported) raises
  :class:`ImageReadError` naming the file; PIL's "image file is truncated" names nothing.

Greyscale, greyscale + alpha, palette (P), RGBA (alpha dropped, as OpenCV and mmcv read it),
CMYK and 16-bit-per-channel RGB are converted by PIL (the decoder keeps the high byte of 16-bit
RGB). :func:`image_size` gives the size of the upright image from the header alone.
"""

from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

from detectron2.data.detection_utils import convert_PIL_to_numpy
from detectron2.utils.file_io import PathManager

__all__ = [
    "ImageReadError",
    "image_size",
    "read_image",
    "read_label",
    "reduce_zero_label",
    "to_8bit",
]

_EXIF_ORIENTATION = 0x0112
#: EXIF orientations that turn the image by 90° (width and height swap).
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
#: Errors PIL raises for files it cannot decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


class ImageReadError(OSError):
    """An image file that cannot be read; the message names the file and the reason."""


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1..8; 1 when absent or unreadable, as detectron2 treats it)."""
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF: detectron2 ignores it too
        return 1


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (modes ``I;16*``, ``I``) → 8-bit ``L``: the high byte, as OpenCV's
    ``imread`` gives it (``I`` is clipped to 0..65535 first); other modes unchanged."""
    if image.mode not in _16BIT_MODES:
        return image
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    scaled = (values >> 8).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _open(path: str) -> Image.Image:
    """The decoded image, upright; :class:`ImageReadError` if it cannot be decoded."""
    try:
        with PathManager.open(path, "rb") as f:
            image = Image.open(f)
            image.load()
    except _DECODE_ERRORS as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
    return image


def read_image(path: str, format: str = "BGR") -> np.ndarray:
    """The image file ``path`` as an H×W×C array in ``format`` (detectron2's: "BGR", "RGB",
    "L", "YUV-BT.601", or any PIL mode), upright (EXIF orientation applied), 8 bits per channel
    (16-bit greyscale scaled, see the module docstring).

    Raises:
        ImageReadError: the file is missing, truncated or not an image (the message names it).
    """
    return convert_PIL_to_numpy(to_8bit(_open(path)), format)


def read_label(path: str, reduce_zero: bool = False) -> np.ndarray:
    """A label image as H×W uint8, as detectron2's DatasetMapper reads it (``L``, no scaling:
    the values are class ids), with mmseg's ``reduce_zero_label`` when ``reduce_zero``
    (:func:`reduce_zero_label`); :class:`ImageReadError` naming the file if it cannot be read."""
    labels = convert_PIL_to_numpy(_open(path), "L")[:, :, 0]
    return reduce_zero_label(labels) if reduce_zero else labels


def reduce_zero_label(labels: np.ndarray) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 ("other", unlabelled in ADEChallengeData2016) becomes the
    ignore value 255 and every class id k ≥ 1 becomes k − 1; 255 stays 255. Any integer dtype."""
    reduced = labels.copy()
    labelled = (labels != 0) & (labels != 255)
    reduced[labels == 0] = 255
    reduced[labelled] -= 1
    return reduced


def image_size(path: str) -> Tuple[int, int]:
    """(height, width) of the upright image (EXIF orientation applied), from the file's header
    (nothing is decoded); :class:`ImageReadError` if the header is not an image's."""
    try:
        with PathManager.open(path, "rb") as f, Image.open(f) as image:
            width, height = image.size
            orientation = _orientation(image)
    except _DECODE_ERRORS as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from error
    return (width, height) if orientation in _TRANSPOSING_ORIENTATIONS else (height, width)
