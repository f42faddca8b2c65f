"""The official (mmdet 2.17) inference of a RetinaNet or Mask R-CNN config node: every switch of
``denseclip.meta_arch.mmdet_inference`` set to mmdet's behaviour. The shared model configs keep
detectron2's stock inference (the switches' defaults; the ViTDet-recipe ViT detectors are
evaluated as detectron2's ViTDet is); the leaf configs that follow the official recipe (the
ResNet COCO detectors and their CLIP baselines, the tiny synthetic ones) call
``use_mmdet_inference``."""

from denseclip.meta_arch import SymmetricClampBox2BoxTransform


def box_transforms(model):
    """The box decoders of ``model``: RetinaNet's, or the RPN's and the box head's."""
    if "head" in model:
        return [model.box2box_transform]
    return [
        model.proposal_generator.box2box_transform,
        model.roi_heads.box_predictor.box2box_transform,
    ]


def use_mmdet_inference(model):
    """Sets mmdet's inference on ``model``, a config node of ``MMDetStyleRetinaNet`` or
    ``MMDetStyleGeneralizedRCNN`` (or their DenseCLIP subclasses)."""
    model.drop_empty_boxes = False  # mmdet keeps boxes clipped to nothing
    if "head" in model:  # RetinaNet: mmdet's per-level candidates, clipped before NMS
        model.candidate_selection = "mmdet"
        model.clip_boxes_before_nms = True
    for transform in box_transforms(model):  # dw, dh clamped from below too
        transform._target_ = SymmetricClampBox2BoxTransform
