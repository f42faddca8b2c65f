"""Semantic FPN decode head with mmseg's dropout and loss reduction."""

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from .losses import check_reduction, semantic_cross_entropy

__all__ = ["DenseCLIPSemSegFPNHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class DenseCLIPSemSegFPNHead(SemSegFPNHead):
    """detectron2's :class:`SemSegFPNHead` as mmseg's ``FPNHead``: channel dropout before the
    classifier, a configurable cross-entropy reduction, and mmseg's sizes: each level, upsampled
    2× per octave by its scale head, is resized (bilinear) to the finest level's size before the
    sum, and the logits to any ``output_size``. On inputs whose sides are multiples of the
    coarsest stride those resizes are exact 2× steps and no-ops, and the head computes what
    :class:`SemSegFPNHead` computes, bit for bit.

    Args:
        input_shape, num_classes, conv_dims, common_stride, loss_weight, norm, ignore_value:
            as :class:`SemSegFPNHead` (official: conv_dims 256, stride 4, norm "BN"/"SyncBN").
        dropout: Dropout2d probability before the 1×1 classifier (0.1 in mmseg).
        loss_reduction: "all_pixels" (mmseg, official) or "valid_pixels" (detectron2).
    """

    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        dropout: float = 0.1,
        loss_reduction: str = "all_pixels",
        **kwargs,
    ):
        check_reduction(loss_reduction)
        super().__init__(input_shape=input_shape, **kwargs)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.loss_reduction = loss_reduction
        # mmseg's classifier initialisation (detectron2 uses MSRA fill, giving large first losses)
        nn.init.normal_(self.predictor.weight, std=0.01)
        nn.init.zeros_(self.predictor.bias)

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        targets: Optional[torch.Tensor] = None,
        output_size: Optional[Sequence[int]] = None,
    ):
        """Training: (None, losses). Inference: (B×K×H×W logits, {}), the finest level's logits
        resized bilinearly to ``output_size`` (mmseg: the input's size, whatever the levels'
        rounding) or, without it, upsampled ``common_stride``× (detectron2)."""
        if self.training or output_size is None:
            return super().forward(features, targets)
        logits = F.interpolate(
            self.layers(features), size=tuple(output_size), mode="bilinear", align_corners=False
        )
        return logits, {}

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """FPN levels → B×K×h×w logits at the finest level's size h×w (H/4×W/4 for inputs
        whose sides are multiples of 32)."""
        x = None
        for f, head in zip(self.in_features, self.scale_heads):
            level = head(features[f])
            x = level if x is None else x + _resize(level, x.shape[-2:])
        return self.predictor(self.dropout(x))

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        loss = semantic_cross_entropy(
            predictions, targets, self.ignore_value, reduction=self.loss_reduction
        )
        return {"loss_sem_seg": loss * self.loss_weight}


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """x resized bilinearly (align_corners=False) to ``size``; as is when it has that size,
    except while traced (export), so that the graph fits every input size."""
    if not torch.jit.is_tracing() and tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
