"""DenseCLIP's auxiliary pixel-text loss for detectron2 detectors (paper §3.4, detection)."""

from typing import Dict, List, Optional, Tuple

import torch

from ..losses import box_seg_aux_loss

__all__ = ["BoxSegAuxLossMixin"]


class BoxSegAuxLossMixin:
    """Adds ``loss_aux_box_seg`` to a detectron2 detector's training losses.

    Mixed in before a detectron2 meta-architecture (``class X(BoxSegAuxLossMixin, RetinaNet)``),
    whose forward runs unchanged. A forward hook on ``self.backbone`` keeps the padded input
    size and the backbone's ``score_map`` (B×K×h×w raw cosine scores, returned by
    :class:`~denseclip.pyramids.FPNWithSideOutputs` over a DenseCLIP backbone); after the
    detector's losses, the auxiliary loss is computed from ``score_map / tau`` and the
    ground-truth boxes (:func:`~denseclip.losses.box_seg_aux_loss`). A backbone without score
    maps (the CLIP baselines) gets no auxiliary loss.

    Args:
        tau: temperature τ of the pixel-text scores (0.07).
        aux_loss_weight: weight of the auxiliary loss (1.0 in the official configs).
        **kwargs: the detectron2 meta-architecture's arguments.
    """

    def __init__(self, *, tau: float = 0.07, aux_loss_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.tau = tau
        self.aux_loss_weight = aux_loss_weight
        self._aux_inputs: Optional[Tuple[Tuple[int, int], torch.Tensor]] = None
        self.backbone.register_forward_hook(self._keep_score_map)

    def _keep_score_map(self, module, inputs, outputs) -> None:
        if self.training and "score_map" in outputs:
            self._aux_inputs = (tuple(inputs[0].shape[-2:]), outputs["score_map"])

    def forward(self, batched_inputs: List[Dict]):
        """As the detector's forward; in training, its losses plus ``loss_aux_box_seg``."""
        if not self.training:
            return super().forward(batched_inputs)
        self._aux_inputs = None
        losses = super().forward(batched_inputs)
        aux_inputs, self._aux_inputs = self._aux_inputs, None
        if aux_inputs is not None and self.aux_loss_weight > 0:
            image_size, score_map = aux_inputs
            instances = [x["instances"].to(self.device) for x in batched_inputs]
            loss = box_seg_aux_loss(
                score_map / self.tau,
                [x.gt_boxes.tensor for x in instances],
                [x.gt_classes for x in instances],
                image_size,
            )
            losses["loss_aux_box_seg"] = loss * self.aux_loss_weight
        return losses
