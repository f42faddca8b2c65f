"""Semantic FPN decode head with mmseg's dropout and loss reduction."""

from typing import Dict

import torch
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import SEM_SEG_HEADS_REGISTRY
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from .losses import check_reduction, semantic_cross_entropy

__all__ = ["DenseCLIPSemSegFPNHead"]


@SEM_SEG_HEADS_REGISTRY.register()
class DenseCLIPSemSegFPNHead(SemSegFPNHead):
    """detectron2's :class:`SemSegFPNHead` as mmseg's ``FPNHead``: channel dropout before the
    classifier and a configurable cross-entropy reduction.

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

    def layers(self, features: Dict[str, torch.Tensor]) -> torch.Tensor:
        """FPN levels → B×K×H/4×W/4 logits."""
        x = sum(head(features[f]) for f, head in zip(self.in_features, self.scale_heads))
        return self.predictor(self.dropout(x))

    def losses(self, predictions: torch.Tensor, targets: torch.Tensor) -> Dict[str, torch.Tensor]:
        loss = semantic_cross_entropy(
            predictions, targets, self.ignore_value, reduction=self.loss_reduction
        )
        return {"loss_sem_seg": loss * self.loss_weight}
