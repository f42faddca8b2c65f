"""The official (mmdet 2.17) inference of a RetinaNet or Mask R-CNN config node: every switch of
``denseclip.meta_arch.mmdet_inference`` set to mmdet's behaviour. Used by the official-recipe
COCO models and their CLIP baselines (and so by the tiny synthetic configs built from them).
``use_detectron2_inference`` sets detectron2's stock inference back (the ViTDet-recipe ViT
detectors, which are evaluated as detectron2's ViTDet is)."""

from detectron2.modeling.box_regression import Box2BoxTransform

from denseclip.meta_arch import SymmetricClampBox2BoxTransform

#: The switches ``use_mmdet_inference`` sets (their defaults are detectron2's behaviour).
_SWITCHES = ("drop_empty_boxes", "candidate_selection", "clip_boxes_before_nms")


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


def use_detectron2_inference(model):
    """Undoes :func:`use_mmdet_inference` on ``model``: the switches removed (so their
    defaults, detectron2's behaviour, apply, and the node also builds detectron2's own
    ``RetinaNet`` / ``GeneralizedRCNN``) and detectron2's ``Box2BoxTransform`` decoders."""
    for key in _SWITCHES:
        model.pop(key, None)
    for transform in box_transforms(model):
        transform._target_ = Box2BoxTransform
