"""DenseCLIP RetinaNet: detectron2's RetinaNet with the auxiliary pixel-text loss."""

from detectron2.modeling import META_ARCH_REGISTRY

from .box_seg_loss import BoxSegAuxLossMixin
from .mmdet_inference import MMDetStyleRetinaNet

__all__ = ["DenseCLIPRetinaNet"]


@META_ARCH_REGISTRY.register()
class DenseCLIPRetinaNet(BoxSegAuxLossMixin, MMDetStyleRetinaNet):
    """detectron2's :class:`RetinaNet` over a DenseCLIP backbone (official ``DenseCLIP_RetinaNet``).

    The backbone (:class:`~denseclip.pyramids.FPNWithSideOutputs` over
    :class:`~denseclip.backbone.DenseCLIPBackbone` with ``score_scale=1/tau``) appends the
    τ-scaled score maps to C5 before the FPN; training adds ``loss_aux_box_seg``
    (:class:`BoxSegAuxLossMixin`). Everything else is the stock detector, with mmdet's inference
    as switches (:class:`~denseclip.meta_arch.mmdet_inference.MMDetStyleRetinaNet`).

    Args:
        tau, aux_loss_weight: see :class:`BoxSegAuxLossMixin`.
        **kwargs: :class:`MMDetStyleRetinaNet`'s arguments.
    """
