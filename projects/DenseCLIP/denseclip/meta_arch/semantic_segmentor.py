"""DenseCLIP semantic segmentor: detectron2's SemanticSegmentor + pixel-text loss + slide inference."""

from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch.nn import functional as F

from detectron2.modeling import META_ARCH_REGISTRY, SemanticSegmentor
from detectron2.structures import ImageList

from ..losses import check_reduction, semantic_cross_entropy

__all__ = ["DenseCLIPSemanticSegmentor", "segment_image", "sliding_windows"]


def sliding_windows(
    height: int, width: int, crop_size: Tuple[int, int], stride: Tuple[int, int]
) -> List[Tuple[int, int, int, int]]:
    """Windows (y1, y2, x1, x2) of mmseg's slide inference: a regular grid whose last row and
    column are shifted back to end at the border; crops shrink to the image when it is smaller.
    A stride larger than the crop would leave pixels in no window: ValueError."""
    (crop_h, crop_w), (stride_h, stride_w) = crop_size, stride
    if not (0 < stride_h <= crop_h and 0 < stride_w <= crop_w):
        raise ValueError(
            f"slide inference: stride {tuple(stride)} must be positive and at most the crop size "
            f"{tuple(crop_size)}, or some pixels fall in no window (the official configs step by "
            "2/3 of the crop: model.stride=(341, 341) for 512² crops)"
        )
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for row in range(rows):
        for col in range(cols):
            y2 = min(row * stride_h + crop_h, height)
            x2 = min(col * stride_w + crop_w, width)
            windows.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def slide_logits(
    image: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    crop_size: Tuple[int, int],
    stride: Tuple[int, int],
    batch_size: int = 8,
) -> torch.Tensor:
    """mmseg's slide inference: 1×3×H×W → 1×K×H×W logits averaged over the overlapping windows
    of :func:`sliding_windows`, which ``encode`` (B×3×h×w → B×K×h×w) gets ``batch_size`` at a
    time (memory grows with the batch, not with the image)."""
    height, width = image.shape[-2:]
    windows = sliding_windows(height, width, crop_size, stride)
    if len(windows) == 1:
        return encode(image)
    summed = None
    counts = image.new_zeros((1, 1, height, width))
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        # windows all have the same size: min(crop, image) in each dimension
        crop_logits = encode(torch.cat([image[..., y1:y2, x1:x2] for y1, y2, x1, x2 in batch]))
        if summed is None:
            summed = image.new_zeros((1, crop_logits.shape[1], height, width))
        for (y1, y2, x1, x2), logits in zip(batch, crop_logits):
            summed[0, :, y1:y2, x1:x2] += logits
            counts[0, :, y1:y2, x1:x2] += 1
    return summed.div_(counts)


def segment_image(
    image: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    test_mode: str,
    crop_size: Tuple[int, int],
    stride: Tuple[int, int],
    output_size: Tuple[int, int],
    slide_batch_size: int = 8,
) -> torch.Tensor:
    """The segmentor's inference of one image, around any window model.

    Args:
        image: 1×3×H×W (the resized image, as ``encode`` takes it).
        encode: B×3×h×w → B×K×h×w logits of any window size (the model's
            :meth:`~DenseCLIPSemanticSegmentor.encode_decode`, or an exported graph of it).
        test_mode: "slide" (:func:`slide_logits` with ``crop_size``, ``stride`` and
            ``slide_batch_size``) or "whole".
        output_size: (height, width) to resize the logits to, bilinearly, when it differs.
    Returns:
        1×K×height×width logits.
    """
    if test_mode == "slide":
        logits = slide_logits(image, encode, crop_size, stride, slide_batch_size)
    else:
        logits = encode(image)
    if tuple(output_size) != tuple(logits.shape[-2:]):
        logits = F.interpolate(
            logits, size=tuple(output_size), mode="bilinear", align_corners=False
        )
    return logits


@META_ARCH_REGISTRY.register()
class DenseCLIPSemanticSegmentor(SemanticSegmentor):
    """Semantic FPN with DenseCLIP's auxiliary pixel-text loss (paper Eq. 7).

    The backbone returns the FPN levels and, for DenseCLIP backbones, ``score_map`` (raw cosine
    scores, B×K×h×w); the auxiliary loss is cross-entropy on ``score_map / tau`` against the
    labels. Baselines (no ``score_map``) train with the decode loss alone.

    Args:
        backbone, sem_seg_head, pixel_mean, pixel_std: as :class:`SemanticSegmentor`; the head's
            forward takes ``output_size`` (:class:`~denseclip.sem_seg_head.DenseCLIPSemSegFPNHead`).
        tau: temperature of the pixel-text loss (0.07).
        aux_loss_weight: weight of the pixel-text loss (0.4 in the official configs).
        aux_loss_reduction: "all_pixels" (mmseg) or "valid_pixels" (detectron2).
        test_mode: "slide" (official ADE20K) or "whole".
        crop_size, stride: (h, w) window and step of slide inference. Training batches are
            padded to at least ``crop_size`` (images with 0, labels with the ignore value), as
            mmseg pads every training crop, so that the "all_pixels" loss mean is taken over the
            same number of pixels.
        slide_batch_size: windows run through the network together in slide inference: memory
            grows with it, not with the image; the logits do not depend on it beyond rounding.
        pad_windows: False (official, mmseg): a window (the image, in whole mode) runs at its
            own size, each level as the strided layers round it; only sides under 32, which the
            encoders cannot take, are padded up to 32. True (detectron2): zero-padded at the bottom and right to a multiple of
            ``size_divisibility``, the logits cropped back. The two agree on windows whose sides
            are multiples of 32.
    """

    def __init__(
        self,
        *,
        backbone,
        sem_seg_head,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        tau: float = 0.07,
        aux_loss_weight: float = 0.4,
        aux_loss_reduction: str = "all_pixels",
        test_mode: str = "slide",
        crop_size: Tuple[int, int] = (512, 512),
        stride: Tuple[int, int] = (341, 341),
        slide_batch_size: int = 8,
        pad_windows: bool = False,
    ):
        super().__init__(
            backbone=backbone, sem_seg_head=sem_seg_head, pixel_mean=pixel_mean, pixel_std=pixel_std
        )
        if test_mode not in ("slide", "whole"):
            raise ValueError(f"test_mode must be 'slide' or 'whole', got {test_mode!r}")
        check_reduction(aux_loss_reduction)
        if slide_batch_size < 1:
            raise ValueError(f"slide_batch_size must be at least 1, got {slide_batch_size}")
        self.tau = tau
        self.aux_loss_weight = aux_loss_weight
        self.aux_loss_reduction = aux_loss_reduction
        self.test_mode = test_mode
        self.crop_size = tuple(crop_size)
        self.stride = tuple(stride)
        self.slide_batch_size = slide_batch_size
        self.pad_windows = pad_windows

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(
            images,
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )

    def _pad_to_crop(self, batch: torch.Tensor, value: float) -> torch.Tensor:
        pad_h = max(self.crop_size[0] - batch.shape[-2], 0)
        pad_w = max(self.crop_size[1] - batch.shape[-1], 0)
        return F.pad(batch, (0, pad_w, 0, pad_h), value=value) if pad_h or pad_w else batch

    def forward(self, batched_inputs: List[Dict]):
        """Training: dict of losses. Inference: ``[{"sem_seg": K×height×width logits}]``."""
        images = self.preprocess_image(batched_inputs)
        if not self.training:
            return self.inference(images, batched_inputs)
        ignore_value = self.sem_seg_head.ignore_value
        targets = ImageList.from_tensors(
            [x["sem_seg"].to(self.device) for x in batched_inputs],
            self.backbone.size_divisibility,
            ignore_value,
            self.backbone.padding_constraints,
        ).tensor
        targets = self._pad_to_crop(targets, ignore_value)
        features = self.backbone(self._pad_to_crop(images.tensor, 0.0))
        _, losses = self.sem_seg_head(features, targets)
        if "score_map" in features and self.aux_loss_weight > 0:
            aux = semantic_cross_entropy(
                features["score_map"] / self.tau,
                targets,
                ignore_value,
                reduction=self.aux_loss_reduction,
            )
            losses["loss_aux_text"] = aux * self.aux_loss_weight
        return losses

    def encode_decode(self, images: torch.Tensor) -> torch.Tensor:
        """B×3×h×w normalised images (any size) → B×K×h×w logits.

        Pads bottom/right with zeros (the normalised mean) as :attr:`pad_windows` says, runs the
        network, resizes the head's logits to the padded size and crops them back. While traced
        (export), it always pads (maybe by 0), so that the graph fits every size.
        """
        h, w = images.shape[-2:]
        pad_h, pad_w = self._window_padding(h, w)
        if torch.jit.is_tracing() or pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        logits, _ = self.sem_seg_head(self.backbone(images), output_size=images.shape[-2:])
        return logits[..., :h, :w]

    def _window_padding(self, height: int, width: int) -> Tuple[int, int]:
        """(bottom, right) padding of an h×w window: up to the next multiple of the backbone's
        size_divisibility (``pad_windows``), or only up to size_divisibility itself."""
        divisor = self.backbone.size_divisibility or 1
        if self.pad_windows:
            return -height % divisor, -width % divisor
        if torch.jit.is_tracing():  # sizes are 0-dim tensors: keep the comparison in the graph
            return (divisor - height).clamp(min=0), (divisor - width).clamp(min=0)
        return max(divisor - height, 0), max(divisor - width, 0)

    def slide_inference(self, image: torch.Tensor) -> torch.Tensor:
        """1×3×H×W → 1×K×H×W: logits averaged over overlapping windows, which run through the
        network ``slide_batch_size`` at a time."""
        return slide_logits(
            image, self.encode_decode, self.crop_size, self.stride, self.slide_batch_size
        )

    def inference(self, images: ImageList, batched_inputs: List[Dict]) -> List[Dict]:
        results = []
        for i, (h, w) in enumerate(images.image_sizes):
            out_h = batched_inputs[i].get("height", h)
            out_w = batched_inputs[i].get("width", w)
            logits = segment_image(
                images.tensor[i : i + 1, :, :h, :w],
                self.encode_decode,
                self.test_mode,
                self.crop_size,
                self.stride,
                (out_h, out_w),
                self.slide_batch_size,
            )
            results.append({"sem_seg": logits[0]})
        return results
