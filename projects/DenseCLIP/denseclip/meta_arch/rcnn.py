"""DenseCLIP Mask R-CNN: detectron2's GeneralizedRCNN with the auxiliary pixel-text loss."""

from detectron2.modeling import META_ARCH_REGISTRY

from .box_seg_loss import BoxSegAuxLossMixin
from .mmdet_inference import MMDetStyleGeneralizedRCNN

__all__ = ["DenseCLIPGeneralizedRCNN"]


@META_ARCH_REGISTRY.register()
class DenseCLIPGeneralizedRCNN(BoxSegAuxLossMixin, MMDetStyleGeneralizedRCNN):
    """detectron2's :class:`GeneralizedRCNN` (Faster / Mask R-CNN) over a DenseCLIP backbone
    (official ``DenseCLIP_MaskRCNN``).

    The backbone (:class:`~denseclip.pyramids.FPNWithSideOutputs` over
    :class:`~denseclip.backbone.DenseCLIPBackbone` with ``score_scale=1/tau``) appends the
    τ-scaled score maps to C5 before the FPN; training adds ``loss_aux_box_seg``
    (:class:`BoxSegAuxLossMixin`). Everything else is the stock detector, with mmdet's final
    rescaling as a switch (:class:`~denseclip.meta_arch.mmdet_inference.MMDetStyleGeneralizedRCNN`).

    Args:
        tau, aux_loss_weight: see :class:`BoxSegAuxLossMixin`.
        **kwargs: :class:`MMDetStyleGeneralizedRCNN`'s arguments.
    """
