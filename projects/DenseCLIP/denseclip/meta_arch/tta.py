"""Multi-scale + flip test-time augmentation for semantic segmentation (the paper's "MS" mIoU).

mmseg's ``MultiScaleFlipAug`` + ``aug_test``: for every ratio r the ORIGINAL image is resized,
keeping its aspect ratio, to fit ``(int(2048·r), int(512·r))`` with mmcv's ``imrescale`` (OpenCV
bilinear on the uint8 pixels); each scale is also run flipped; every pass gives softmax
probabilities resized to the original size (flipped back), and their mean is the prediction
(argmax). The model runs its own inference (slide or whole) on each pass.
"""

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..data.transforms import OpenCVResizeTransform, mmcv_rescale_size

__all__ = ["SemanticSegmentorWithTTA", "PAPER_TTA_SCALES"]

#: mmseg's ``img_ratios`` of the paper's multi-scale test.
PAPER_TTA_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


class SemanticSegmentorWithTTA(nn.Module):
    """Wraps a semantic segmentor (inference only) to average its predictions over scales and
    horizontal flips, like detectron2's ``GeneralizedRCNNWithTTA``.

    Each input's ``image`` is resized to the scale's target size computed from the ORIGINAL size
    (``height``, ``width``), so the test mapper should not resize (``--aug-test`` sets the test
    mapper's augmentations to ``[]``); given an already resized image the target sizes are the
    same, only resized from fewer pixels. Resizing is mmcv's: OpenCV bilinear in the image's dtype
    (uint8 from detectron2's DatasetMapper, as mmseg resizes the uint8 image it loaded).

    Args:
        model: a segmentor returning ``[{"sem_seg": K×height×width logits}]`` in eval mode.
        scales: ratios r of ``base_size``.
        flip: also run every scale on the horizontally flipped image.
        base_size: (long, short) target at ratio 1 (mmseg ``img_scale=(2048, 512)``).

    Output: ``[{"sem_seg": K×height×width}]`` MEAN SOFTMAX PROBABILITIES (not logits).
    """

    def __init__(
        self,
        model: nn.Module,
        scales: Sequence[float] = PAPER_TTA_SCALES,
        flip: bool = True,
        base_size: Tuple[int, int] = (2048, 512),
    ):
        super().__init__()
        if not scales:
            raise ValueError("scales must list at least one ratio")
        self.model = model
        self.scales = tuple(scales)
        self.flip = flip
        self.base_size = tuple(base_size)

    def target_size(self, height: int, width: int, scale: float) -> Tuple[int, int]:
        """(h, w) of an original height×width image at ratio ``scale`` (mmseg's rounding)."""
        target = (int(self.base_size[0] * scale), int(self.base_size[1] * scale))
        return mmcv_rescale_size(height, width, target)

    @staticmethod
    def _resize(image: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """image: C×h×w → C×size with OpenCV's bilinear filter (mmcv ``imresize``), same dtype."""
        if tuple(image.shape[-2:]) == tuple(size):
            return image
        hwc = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())
        resized = OpenCVResizeTransform(*hwc.shape[:2], *size).apply_image(hwc)
        return torch.from_numpy(resized).permute(2, 0, 1).to(image.device)

    def augmented_inputs(self, inputs: Dict) -> List[Tuple[Dict, bool]]:
        """One input dict → [(input dict of one pass, flipped)], scales in order, then flips."""
        image = inputs["image"]
        height, width = inputs.get("height", image.shape[-2]), inputs.get("width", image.shape[-1])
        passes = []
        for scale in self.scales:
            resized = self._resize(image, self.target_size(height, width, scale))
            for flipped in (False, True) if self.flip else (False,):
                pass_image = resized.flip(-1) if flipped else resized
                passes.append(({"image": pass_image, "height": height, "width": width}, flipped))
        return passes

    def forward(self, batched_inputs: List[Dict]) -> List[Dict]:
        if self.model.training:
            raise RuntimeError("test-time augmentation is for inference: call .eval() first")
        return [{"sem_seg": self._predict(inputs)} for inputs in batched_inputs]

    def _predict(self, inputs: Dict) -> torch.Tensor:
        """→ K×height×width mean softmax probabilities over the passes."""
        total = None
        passes = self.augmented_inputs(inputs)
        for pass_inputs, flipped in passes:
            # float32 whatever the logits (bfloat16 under autocast): a mean of many passes
            probs = self.model([pass_inputs])[0]["sem_seg"].softmax(dim=0, dtype=torch.float32)
            probs = probs.flip(-1) if flipped else probs
            total = probs if total is None else total + probs
        return total / len(passes)
