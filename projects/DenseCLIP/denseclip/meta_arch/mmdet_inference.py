"""mmdet 2.17's test-time post-processing as switches on detectron2's RetinaNet and R-CNN.

The official DenseCLIP detectors were evaluated with mmdet 2.17 (mmcv 1.3.17). Their networks
are detectron2's (the converted checkpoints give the same tensors), but the steps from the head
outputs to the final boxes differ in a few places. Each difference is a constructor argument
(a config switch) whose default is detectron2's stock behaviour; the official-recipe COCO configs
set the official one.

RetinaNet (mmdet ``AnchorHead._get_bboxes`` + ``multiclass_nms``), per image:

- ``candidate_selection``: per pyramid level, detectron2 keeps the ``test_topk_candidates``
  best (anchor, class) pairs scoring above ``test_score_thresh``; mmdet ("mmdet") keeps the
  ``nms_pre`` anchors with the best maximum class score (all anchors when the level has no
  more), then every (anchor, class) pair of those above ``score_thr``.
- ``clip_boxes_before_nms``: mmdet clips every decoded box to the resized, unpadded image before
  the per-class NMS; detectron2 clips after it (in :func:`detector_postprocess`), so boxes
  crossing the image border suppress each other differently.
- ``drop_empty_boxes`` (RetinaNet and R-CNN): detectron2's :func:`detector_postprocess` drops
  boxes that are empty after clipping; mmdet keeps them (a box wholly outside the image, clipped
  to zero width, stays a detection with its score).
- Box decoding (RetinaNet, RPN, box head): mmdet's ``DeltaXYWHBBoxCoder`` clamps the log-scale
  deltas dw, dh to ``[-log(1000/16), log(1000/16)]``, detectron2's :class:`Box2BoxTransform`
  only from above: :class:`SymmetricClampBox2BoxTransform` in ``box2box_transform``.

Everything else (anchors, thresholds, NMS, the RPN, the R-CNN box step, RoIAlign, mask pasting)
already agrees; docs/development.md ("Official detection inference") lists what was compared.
"""

from typing import Dict, List, Tuple

import torch
from detectron2.modeling import GeneralizedRCNN, RetinaNet
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances, ROIMasks

__all__ = [
    "CANDIDATE_SELECTIONS",
    "MMDetStyleGeneralizedRCNN",
    "MMDetStyleRetinaNet",
    "SymmetricClampBox2BoxTransform",
    "rescale_detections",
]

#: RetinaNet's per-level candidate selection before NMS: detectron2's or mmdet 2.17's.
CANDIDATE_SELECTIONS = ("detectron2", "mmdet")


class SymmetricClampBox2BoxTransform(Box2BoxTransform):
    """detectron2's :class:`Box2BoxTransform` whose decoded log-scale deltas dw, dh are clamped
    to ``[-scale_clamp, scale_clamp]`` (mmdet's ``DeltaXYWHBBoxCoder`` with ``wh_ratio_clip =
    16/1000``: a box grows or shrinks at most 62.5×), where detectron2 clamps them only from
    above. Same arguments as :class:`Box2BoxTransform`; encoding is unchanged."""

    def apply_deltas(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """deltas: N×4k (dx, dy, dw, dh per box, scaled by the weights), boxes: N×4 → N×4k."""
        _, _, ww, wh = self.weights
        inf = float("inf")
        lower = deltas.new_tensor([-inf, -inf, -self.scale_clamp * ww, -self.scale_clamp * wh])
        return super().apply_deltas(
            torch.maximum(deltas, lower.repeat(deltas.shape[1] // 4)), boxes
        )


def rescale_detections(
    results: Instances,
    output_height: int,
    output_width: int,
    drop_empty_boxes: bool = True,
    mask_threshold: float = 0.5,
) -> Instances:
    """Detections of the resized image → the output (original) size: boxes scaled and clipped,
    masks pasted and thresholded (≥ ``mask_threshold``).

    With ``drop_empty_boxes`` this is detectron2's :func:`detector_postprocess`, which drops the
    boxes that are empty after clipping; without, mmdet's result, which keeps them.
    """
    if drop_empty_boxes:
        return detector_postprocess(results, output_height, output_width, mask_threshold)
    new_size = (output_height, output_width)
    if isinstance(output_width, torch.Tensor):  # traced (export): keep the sizes symbolic
        new_size = torch.stack(new_size)
        output_height, output_width = output_height.float(), output_width.float()
    scale_x = output_width / results.image_size[1]
    scale_y = output_height / results.image_size[0]
    results = Instances(new_size, **results.get_fields())
    results.pred_boxes.scale(scale_x, scale_y)
    results.pred_boxes.clip(results.image_size)
    if results.has("pred_masks"):
        results.pred_masks = (
            ROIMasks(results.pred_masks[:, 0])
            .to_bitmasks(results.pred_boxes, output_height, output_width, mask_threshold)
            .tensor
        )
    return results


def _output_size(inputs: Dict, results: Instances) -> Tuple[int, int]:
    return inputs.get("height", results.image_size[0]), inputs.get("width", results.image_size[1])


class MMDetStyleRetinaNet(RetinaNet):
    """detectron2's :class:`RetinaNet` with mmdet 2.17's inference as switches (module doc).

    Args:
        candidate_selection: "detectron2" (default) or "mmdet", see :data:`CANDIDATE_SELECTIONS`.
        clip_boxes_before_nms: clip decoded boxes to the image before NMS (mmdet).
        drop_empty_boxes: drop boxes empty after the final clipping (detectron2, default).
        **kwargs: :class:`RetinaNet`'s arguments (``test_topk_candidates`` is mmdet's
            ``nms_pre``, ``test_score_thresh`` its ``score_thr``).
    """

    def __init__(
        self,
        *,
        candidate_selection: str = "detectron2",
        clip_boxes_before_nms: bool = False,
        drop_empty_boxes: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if candidate_selection not in CANDIDATE_SELECTIONS:
            raise ValueError(
                f"candidate_selection: expected one of {CANDIDATE_SELECTIONS}, "
                f"got {candidate_selection!r}"
            )
        self.candidate_selection = candidate_selection
        self.clip_boxes_before_nms = clip_boxes_before_nms
        self.drop_empty_boxes = drop_empty_boxes

    def forward(self, batched_inputs: List[Dict]):
        """As :class:`RetinaNet`; at inference the final rescaling honours
        ``drop_empty_boxes``."""
        if self.training:
            return super().forward(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        features = [features[f] for f in self.head_in_features]
        results = self.forward_inference(images, features, self.head(features))
        return [
            {"instances": rescale_detections(r, *_output_size(x, r), self.drop_empty_boxes)}
            for r, x in zip(results, batched_inputs)
        ]

    def _decode_per_level_predictions(
        self,
        anchors: Boxes,
        pred_scores: torch.Tensor,
        pred_deltas: torch.Tensor,
        score_thresh: float,
        topk_candidates: int,
        image_size: Tuple[int, int],
    ) -> Instances:
        """Candidates of one level: anchors (HWA boxes), pred_scores HWA×K (sigmoid),
        pred_deltas HWA×4 → Instances with ``pred_boxes``, ``scores``, ``pred_classes``."""
        if self.candidate_selection == "mmdet":
            anchor_idxs = self._mmdet_candidate_anchors(pred_scores, topk_candidates)
            pair_idxs = torch.nonzero(pred_scores[anchor_idxs] > score_thresh)
            anchor_idxs, classes_idxs = anchor_idxs[pair_idxs[:, 0]], pair_idxs[:, 1]
            boxes = self.box2box_transform.apply_deltas(
                pred_deltas[anchor_idxs], anchors.tensor[anchor_idxs]
            )
            pred = Instances(
                image_size,
                pred_boxes=Boxes(boxes),
                scores=pred_scores[anchor_idxs, classes_idxs],
                pred_classes=classes_idxs,
            )
        else:
            pred = super()._decode_per_level_predictions(
                anchors, pred_scores, pred_deltas, score_thresh, topk_candidates, image_size
            )
        if self.clip_boxes_before_nms:
            pred.pred_boxes.clip(image_size)
        return pred

    @staticmethod
    def _mmdet_candidate_anchors(pred_scores: torch.Tensor, topk: int) -> torch.Tensor:
        """Indices of mmdet's candidate anchors of one level (pred_scores: HWA×K): the ``topk``
        with the best maximum class score when the level has more, else all, in their order.

        While tracing (export) the level's anchor count is symbolic, so the top min(topk,
        count) are always taken: the same anchors, only their order differs where none are
        dropped, which can change the result only between boxes of exactly equal scores."""
        num_anchors = pred_scores.shape[0]
        if topk <= 0:
            return torch.arange(num_anchors, device=pred_scores.device)
        best = pred_scores.max(dim=1).values
        if isinstance(num_anchors, torch.Tensor):  # traced
            return best.topk(torch.clamp(num_anchors, max=topk)).indices
        if topk < num_anchors:
            return best.topk(topk).indices
        return torch.arange(num_anchors, device=pred_scores.device)


class MMDetStyleGeneralizedRCNN(GeneralizedRCNN):
    """detectron2's :class:`GeneralizedRCNN` with mmdet 2.17's final rescaling as a switch.

    The RPN and box-head steps already follow mmdet's (module doc) but for the box decoding,
    which is the ``box2box_transform`` of the RPN and the box predictor.

    Args:
        drop_empty_boxes: drop boxes empty after the final clipping (detectron2, default).
        **kwargs: :class:`GeneralizedRCNN`'s arguments.
    """

    def __init__(self, *, drop_empty_boxes: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.drop_empty_boxes = drop_empty_boxes

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        """As :meth:`GeneralizedRCNN.inference`, rescaling with :func:`rescale_detections`."""
        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        if not do_postprocess:
            return results
        return [
            {"instances": rescale_detections(r, *_output_size(x, r), self.drop_empty_boxes)}
            for r, x in zip(results, batched_inputs)
        ]
