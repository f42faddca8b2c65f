"""Pixel-level losses shared by the decode head and DenseCLIP's pixel-text auxiliary loss."""

import torch
from torch.nn import functional as F

__all__ = ["LOSS_REDUCTIONS", "semantic_cross_entropy"]

#: "all_pixels": mmseg 0.19 — the mean over every label pixel, ignored ones counting as 0.
#: "valid_pixels": detectron2 / PyTorch — the mean over non-ignored pixels only.
LOSS_REDUCTIONS = ("all_pixels", "valid_pixels")


def semantic_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_value: int = 255,
    reduction: str = "all_pixels",
) -> torch.Tensor:
    """Cross-entropy of class logits against a label map, after bilinear resizing to its size.

    Args:
        logits: B×K×h×w class scores (any stride).
        targets: B×H×W int64 labels in [0, K) or ``ignore_value``.
        ignore_value: label excluded from the loss.
        reduction: one of :data:`LOSS_REDUCTIONS`.
    Returns:
        Scalar loss. With no valid pixel it is 0 (and still differentiable).
    """
    if reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"reduction must be one of {LOSS_REDUCTIONS}, got {reduction!r}")
    if logits.shape[-2:] != targets.shape[-2:]:
        logits = F.interpolate(
            logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False
        )
    per_pixel = F.cross_entropy(
        logits.float(), targets, reduction="none", ignore_index=ignore_value
    )
    if reduction == "all_pixels":
        return per_pixel.mean()
    return per_pixel.sum() / (targets != ignore_value).sum().clamp(min=1)
