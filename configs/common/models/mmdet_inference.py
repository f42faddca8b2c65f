"""The official (mmdet 2.17) inference of a RetinaNet or Mask R-CNN config node: every switch of
``denseclip.meta_arch.mmdet_inference`` set to mmdet's behaviour. Used by the official-recipe
COCO models and their CLIP baselines (and so by the tiny synthetic configs built from them)."""

from denseclip.meta_arch import SymmetricClampBox2BoxTransform


def use_mmdet_inference(model):
    """Sets mmdet's inference on ``model``, a config node of ``MMDetStyleRetinaNet`` or
    ``MMDetStyleGeneralizedRCNN`` (or their DenseCLIP subclasses)."""
    model.drop_empty_boxes = False  # mmdet keeps boxes clipped to nothing
    if "head" in model:  # RetinaNet: mmdet's per-level candidates, clipped before NMS
        model.candidate_selection = "mmdet"
        model.clip_boxes_before_nms = True
        transforms = [model.box2box_transform]
    else:  # Mask R-CNN: the RPN and the box head decode as mmdet
        transforms = [
            model.proposal_generator.box2box_transform,
            model.roi_heads.box_predictor.box2box_transform,
        ]
    for transform in transforms:  # dw, dh clamped from below too
        transform._target_ = SymmetricClampBox2BoxTransform
