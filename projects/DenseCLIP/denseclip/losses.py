"""Pixel-level losses shared by the decode head and DenseCLIP's pixel-text auxiliary losses."""

import math
from typing import Sequence, Tuple

import torch
from torch.nn import functional as F
from torch.autograd.function import once_differentiable

__all__ = [
    "LOSS_REDUCTIONS",
    "box_seg_aux_loss",
    "check_reduction",
    "box_seg_targets",
    "semantic_cross_entropy",
]

#: "all_pixels": mmseg 0.19 — the mean over every label pixel, ignored ones counting as 0.
#: "valid_pixels": detectron2 / PyTorch — the mean over non-ignored pixels only.
LOSS_REDUCTIONS = ("all_pixels", "valid_pixels")


def check_reduction(reduction: str) -> None:
    """Raises ValueError unless ``reduction`` is one of :data:`LOSS_REDUCTIONS`."""
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision (autocast) logits in float32 for the loss; float32 / float64 unchanged."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _ResizedCrossEntropySum(torch.autograd.Function):
    """Σ over the pixels of one image of the cross-entropy of its logits resized bilinearly
    (align_corners=False) to the label map, ignored pixels adding 0; its gradient is computed in
    the same pass and kept, so that the full-resolution logits are made once and never saved.

    One softmax serves both: the loss is −log of the label's probability (its log-softmax where
    that probability underflows float), the gradient interp* (softmax(resized) − onehot(label))
    on valid pixels, interp* being the resize's adjoint. Computed channels-last (the K scores of
    a pixel adjacent in memory), where the softmax over classes runs about 1.5× faster on CPU
    than over NCHW's strided channels."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_value: int):
        """logits 1×K×h×w (float32 / float64), targets 1×H×W → scalar sum."""
        size, num_classes = targets.shape[-2:], logits.shape[1]
        with torch.enable_grad():
            leaf = logits.detach().contiguous(memory_format=torch.channels_last)
            leaf.requires_grad_(ctx.needs_input_grad[0])
            resized = leaf
            if leaf.shape[-2:] != size:
                resized = F.interpolate(leaf, size=size, mode="bilinear", align_corners=False)
        per_pixel = resized.detach().permute(0, 2, 3, 1).reshape(-1, num_classes)
        probs = F.softmax(per_pixel, dim=1)
        labels = targets.reshape(-1)
        valid = labels != ignore_value
        labels = torch.where(valid, labels, 0)[:, None]
        log_picked = probs.gather(1, labels).squeeze(1).log_()
        # where the label's probability is subnormal or 0, its log is imprecise: log-softmax
        underflow = (valid & (log_picked < math.log(torch.finfo(probs.dtype).tiny))).nonzero()
        if len(underflow):
            rows = underflow.squeeze(1)
            exact = F.log_softmax(per_pixel[rows], dim=1).gather(1, labels[rows]).squeeze(1)
            log_picked[rows] = exact
        loss = -torch.where(valid, log_picked, 0).sum()
        if ctx.needs_input_grad[0]:
            grad = probs
            grad.scatter_add_(1, labels, -valid.to(grad.dtype)[:, None])
            grad.index_fill_(0, (~valid).nonzero().squeeze(1), 0)
            grad = grad.view(1, *size, num_classes).permute(0, 3, 1, 2)
            if resized is not leaf:
                (grad,) = torch.autograd.grad(resized, leaf, grad)
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss, None, None


def semantic_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_value: int = 255,
    reduction: str = "all_pixels",
) -> torch.Tensor:
    """Cross-entropy of class logits against a label map, after bilinear resizing to its size.

    Computed image by image, each image's loss and gradient in one pass over its
    full-resolution logits (K×H×W: 39 M values for an ADE20K crop), so that a training step
    neither keeps them for the backward pass nor recomputes them there. Same loss and gradient
    as the resize followed by ``F.cross_entropy``, up to rounding.

    Args:
        logits: B×K×h×w class scores (any stride); half precision is computed in float32.
        targets: B×H×W int64 labels in [0, K) or ``ignore_value``.
        ignore_value: label excluded from the loss.
        reduction: one of :data:`LOSS_REDUCTIONS`.
    Returns:
        Scalar loss. With no valid pixel it is 0 (and still differentiable).
    """
    check_reduction(reduction)
    total = 0
    for image_logits, image_targets in zip(_full_precision(logits).split(1), targets.split(1)):
        total = total + _ResizedCrossEntropySum.apply(image_logits, image_targets, ignore_value)
    if reduction == "all_pixels":
        return total / targets.numel()
    return total / (targets != ignore_value).sum().clamp(min=1)


def box_seg_targets(
    boxes: Sequence[torch.Tensor],
    classes: Sequence[torch.Tensor],
    num_classes: int,
    size: Tuple[int, int],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Box-shaped pixel targets of DenseCLIP's detection auxiliary loss (official
    ``build_seg_target``), at stride 4.

    Box coordinates are divided by 4 and truncated to integers, x clamped to [0, w-1] and y to
    [0, h-1]; box (x1, y1, x2, y2) of class k then sets ``target[k, y1:y2, x1:x2] = 1`` (the end
    row and column excluded, so a box clamped to a single row or column covers nothing).

    Args:
        boxes: per image, N_i×4 (x1, y1, x2, y2) boxes in input pixels.
        classes: per image, N_i class ids in [0, K).
        num_classes: K.
        size: (h, w), the stride-4 grid: the padded batch's (H // 4, W // 4).
    Returns:
        ``target`` B×K×h×w in {0, 1} and ``mask`` B×1×h×w, 1 on the union of all boxes of the
        image (whatever their class), as float tensors on the boxes' device.
    """
    height, width = size
    device = boxes[0].device
    target = torch.zeros(len(boxes), num_classes, height, width, device=device)
    mask = torch.zeros(len(boxes), 1, height, width, device=device)
    ys = torch.arange(height, device=device)[:, None]
    xs = torch.arange(width, device=device)[None, :]
    for image, (image_boxes, image_classes) in enumerate(zip(boxes, classes)):
        if len(image_boxes) == 0:
            continue
        cells = (image_boxes / 4).long()
        x1, x2 = (cells[:, i].clamp(0, width - 1)[:, None, None] for i in (0, 2))
        y1, y2 = (cells[:, i].clamp(0, height - 1)[:, None, None] for i in (1, 3))
        inside = ((ys >= y1) & (ys < y2) & (xs >= x1) & (xs < x2)).float()  # N×h×w
        target[image].index_add_(0, image_classes.to(device).long(), inside).clamp_(max=1)
        mask[image, 0] = inside.amax(dim=0)
    return target, mask


def box_seg_aux_loss(
    logits: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    classes: Sequence[torch.Tensor],
    image_size: Tuple[int, int],
) -> torch.Tensor:
    """DenseCLIP's auxiliary detection loss (official ``compute_seg_loss``): binary cross-entropy
    of the pixel-text scores against box-shaped targets, inside the boxes only.

    ``loss = Σ mask·BCE(sigmoid(s₄), target) / Σ mask`` where s₄ are the logits resized
    bilinearly (align_corners=False) to the stride-4 grid of the padded batch and the mask, the
    union of the image's boxes, is repeated over the K class channels (so the sum runs over K
    times the covered pixels, and the loss is a mean over covered pixels and classes). Computed
    with ``binary_cross_entropy_with_logits``: the same value as the official
    ``binary_cross_entropy(sigmoid(·))``, without its log clamping (never reached at |s| ≤ 1/τ).

    Args:
        logits: B×K×h×w score map divided by τ (any stride).
        boxes, classes: per image, the ground-truth boxes (N_i×4, XYXY input pixels) and class
            ids (N_i).
        image_size: (H, W) of the padded batch; targets live on its (H // 4)×(W // 4) grid.
    Returns:
        Scalar loss; 0 (differentiable) when the batch has no box, where the official code
        divides 0 by 0.
    """
    size = (image_size[0] // 4, image_size[1] // 4)
    logits = F.interpolate(_full_precision(logits), size=size, mode="bilinear", align_corners=False)
    target, mask = box_seg_targets(boxes, classes, logits.shape[1], size)
    target, mask = target.to(logits.dtype), mask.to(logits.dtype)
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    covered = mask.sum() * logits.shape[1]
    return (per_pixel * mask).sum() / covered.clamp(min=1)
