"""The renaming rules of official DenseCLIP checkpoints (mmcv format): official key → our key.

The official models are mmseg modules; ours are detectron2's. Our CLIP encoders, contexts, γ and
context decoder keep the official inner names, so those map by prefix; the neck and the decode
head are renamed and re-numbered. Semantic FPN (segmentation, DenseCLIP and CLIP baselines):

    official (mmseg 0.19)                          ours (detectron2)
    backbone.*                                     backbone.bottom_up.image_encoder.*
    text_encoder.*                                 backbone.bottom_up.prompts.text_encoder.*
    contexts                                       backbone.bottom_up.prompts.contexts
    gamma                                          backbone.bottom_up.gamma
    context_decoder.*                              backbone.bottom_up.context_decoder.*
    neck.lateral_convs.{i}.conv.{weight,bias}      backbone.fpn_lateral{i+2}.{weight,bias}
    neck.fpn_convs.{i}.conv.{weight,bias}          backbone.fpn_output{i+2}.{weight,bias}
    decode_head.scale_heads.{i}.{j}.conv.weight    sem_seg_head.p{i+2}.{j}.weight
    decode_head.scale_heads.{i}.{j}.bn.*           sem_seg_head.p{i+2}.{j}.norm.*
    decode_head.conv_seg.{weight,bias}             sem_seg_head.predictor.{weight,bias}

mmseg numbers the pyramid levels from 0 (stride 4), detectron2 names them by log2(stride): level
i is ``{i+2}``. Both heads interleave their 3×3 convs with ×2 upsampling modules in one
``Sequential`` per level, so the index j inside a level is the same in both.

Every tensor is kept as the checkpoint has it: in particular the text encoder, whose official
weights differ slightly from CLIP's (mmcv's poly schedule trains its ``lr_mult=0`` group at
``min_lr``), is never reloaded from CLIP. The official IdentityHead (auxiliary loss) has no
parameters.

Detection (mmdet 2.17; DenseCLIP and CLIP baselines) shares the backbone rules. RetinaNet (FPN
from C3, ``start_level=1``; P6 from C5 ``on_input``, P7 from P6):

    neck.lateral_convs.{i}.conv.*                  backbone.fpn_lateral{i+3}.*
    neck.fpn_convs.{i}.conv.*  (i = 0, 1, 2)       backbone.fpn_output{i+3}.*
    neck.fpn_convs.3.conv.*  /  .4.conv.*          backbone.top_block.p6.*  /  .p7.*
    bbox_head.cls_convs.{j}.conv.*                 head.cls_subnet.{2j}.*   (convs and ReLUs)
    bbox_head.reg_convs.{j}.conv.*                 head.bbox_subnet.{2j}.*
    bbox_head.retina_cls.*                         head.cls_score.*   anchors reordered
    bbox_head.retina_reg.*                         head.bbox_pred.*   anchors reordered

The two dense predictors are the only tensors whose values change: per location, mmdet lays out
its 9 anchors ratio-major (for each ratio, each scale) and detectron2 size-major (for each size,
each ratio), so their output channels (anchor a, then class or box delta) are permuted by anchor
block (:class:`PermuteAnchors`). Mask R-CNN (FPN from C2; P6 by max-pooling, no parameters):

    neck.lateral_convs.{i}.conv.*                  backbone.fpn_lateral{i+2}.*
    neck.fpn_convs.{i}.conv.*                      backbone.fpn_output{i+2}.*
    rpn_head.rpn_conv / rpn_cls / rpn_reg          proposal_generator.rpn_head.conv /
                                                     objectness_logits / anchor_deltas
    roi_head.bbox_head.shared_fcs.{i}              roi_heads.box_head.fc{i+1}
    roi_head.bbox_head.fc_cls / fc_reg             roi_heads.box_predictor.cls_score / bbox_pred
    roi_head.mask_head.convs.{i}.conv              roi_heads.mask_head.mask_fcn{i+1}
    roi_head.mask_head.upsample / conv_logits      roi_heads.mask_head.deconv / predictor

The RPN has one scale, so its 3 anchors (ratios 0.5, 1, 2) are in the same order in both. The
box predictor needs no change either: background is the last of the K + 1 scores in both, the
4K deltas are class-major (dx, dy, dw, dh) in both, and mmdet's target stds (0.1, 0.1, 0.2, 0.2)
are detectron2's weights (10, 10, 5, 5), as RetinaNet's stds 1 (and the RPN's) are weights 1.
"""

import dataclasses
import re
from typing import Callable, List, Optional, Tuple

import torch

__all__ = [
    "OfficialCheckpointError",
    "KeyRule",
    "PermuteAnchors",
    "RuleTable",
    "DENSECLIP_BACKBONE_RULES",
    "SEMANTIC_FPN_RULES",
    "RETINANET_ANCHORS",
    "RETINANET_RULES",
    "MASK_RCNN_RULES",
    "RULE_TABLES",
]


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be read, converted, or loaded into the given model."""


@dataclasses.dataclass(frozen=True)
class PermuteAnchors:
    """A value transform: a dense head's output channels from mmdet's anchor order to
    detectron2's.

    Both lay out a predictor's output channels anchor by anchor (channel ``a·C + c``, C = classes
    or 4 box deltas). mmdet's ``AnchorGenerator`` numbers a location's anchors ratio-major
    (``a = ratio·num_scales + scale``), detectron2's ``DefaultAnchorGenerator`` size-major
    (``a = size·num_ratios + ratio``); this moves each block of C channels (of weight and bias
    alike, dim 0) to its detectron2 place.
    """

    num_ratios: int
    num_scales: int

    def official_order(self) -> List[int]:
        """For each detectron2 anchor index, the mmdet anchor index it takes."""
        return [
            ratio * self.num_scales + scale
            for scale in range(self.num_scales)
            for ratio in range(self.num_ratios)
        ]

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        num_anchors = self.num_ratios * self.num_scales
        if tensor.dim() == 0 or tensor.shape[0] % num_anchors:
            raise OfficialCheckpointError(
                f"{tuple(tensor.shape)}: dim 0 is not a multiple of {num_anchors} anchors"
            )
        blocks = tensor.reshape(num_anchors, -1, *tensor.shape[1:])
        return blocks[self.official_order()].reshape(tensor.shape).contiguous()

    def __str__(self) -> str:
        return (
            f"anchors reordered ({self.num_ratios} ratios x {self.num_scales} scales: mmdet "
            "ratio-major -> detectron2 size-major)"
        )


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """One renaming rule: an official key pattern → our key (and, rarely, a value transform).

    Args:
        pattern: regular expression that must match the whole official key.
        template: our key, a ``str.format`` template over the pattern's named groups.
        level_offset: added to the group ``level`` (an mmseg pyramid index) before formatting.
        level_step: the group ``level`` is multiplied by it first (an official layer index
            whose detectron2 module has other modules between layers).
        transform: applied to the tensor (official layout → ours); None keeps it as is.
    """

    pattern: str
    template: str
    level_offset: int = 0
    level_step: int = 1
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    def apply(self, key: str) -> Optional[str]:
        """Our name for ``key``, or None when the rule does not match it."""
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        groups = match.groupdict()
        if "level" in groups:
            groups["level"] = int(groups["level"]) * self.level_step + self.level_offset
        return self.template.format(**groups)


@dataclasses.dataclass(frozen=True)
class RuleTable:
    """The renaming rules of one official architecture.

    Args:
        name: shown in messages.
        marker: a key prefix that only this architecture's checkpoints have; it picks the table.
        rules: tried in order, the first match wins; a key matching none is an error.
    """

    name: str
    marker: str
    rules: Tuple[KeyRule, ...]

    def rename(self, key: str) -> Optional[str]:
        """Our name for ``key`` by the first matching rule, or None."""
        found = self.lookup(key)
        return found[0] if found else None

    def lookup(self, key: str) -> Optional[Tuple[str, KeyRule]]:
        """(our name for ``key``, the first rule that matches it), or None."""
        for rule in self.rules:
            new_key = rule.apply(key)
            if new_key is not None:
                return new_key, rule
        return None


#: The official image encoder, text side and context decoder → our FPN bottom-up
#: (:class:`~denseclip.backbone.DenseCLIPBackbone` / ``CLIPImageBackbone``); shared by the
#: segmentation and detection tables.
DENSECLIP_BACKBONE_RULES = (
    KeyRule(r"backbone\.(?P<rest>.+)", "backbone.bottom_up.image_encoder.{rest}"),
    KeyRule(r"text_encoder\.(?P<rest>.+)", "backbone.bottom_up.prompts.text_encoder.{rest}"),
    KeyRule(r"contexts", "backbone.bottom_up.prompts.contexts"),
    KeyRule(r"gamma", "backbone.bottom_up.gamma"),
    KeyRule(r"context_decoder\.(?P<rest>.+)", "backbone.bottom_up.context_decoder.{rest}"),
)

# detectron2's FPN and SemSegFPNHead name a level by log2(its stride); mmseg's level 0 has stride 4.
_FIRST_LEVEL = 2

SEMANTIC_FPN_RULES = RuleTable(
    name="Semantic FPN (mmseg)",
    marker="decode_head.",
    rules=(
        *DENSECLIP_BACKBONE_RULES,
        KeyRule(
            r"neck\.lateral_convs\.(?P<level>\d+)\.conv\.(?P<param>weight|bias)",
            "backbone.fpn_lateral{level}.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"neck\.fpn_convs\.(?P<level>\d+)\.conv\.(?P<param>weight|bias)",
            "backbone.fpn_output{level}.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"decode_head\.scale_heads\.(?P<level>\d+)\.(?P<layer>\d+)\.conv\.weight",
            "sem_seg_head.p{level}.{layer}.weight",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"decode_head\.scale_heads\.(?P<level>\d+)\.(?P<layer>\d+)\.bn\.(?P<param>.+)",
            "sem_seg_head.p{level}.{layer}.norm.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(r"decode_head\.conv_seg\.(?P<param>weight|bias)", "sem_seg_head.predictor.{param}"),
    ),
)

_PARAM = r"(?P<param>weight|bias)"

#: RetinaNet's 9 anchors per location: mmdet ratios (0.5, 1, 2) × octave scales 2^(0, 1/3, 2/3),
#: detectron2 sizes (x, x·2^(1/3), x·2^(2/3)) × the same aspect ratios.
RETINANET_ANCHORS = PermuteAnchors(num_ratios=3, num_scales=3)

RETINANET_RULES = RuleTable(
    name="RetinaNet (mmdet)",
    marker="bbox_head.",
    rules=(
        *DENSECLIP_BACKBONE_RULES,
        # the neck starts at C3 (start_level=1): its level 0 is detectron2's "3"
        KeyRule(
            rf"neck\.lateral_convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "backbone.fpn_lateral{level}.{param}",
            3,
        ),
        KeyRule(
            rf"neck\.fpn_convs\.(?P<level>[0-2])\.conv\.{_PARAM}",
            "backbone.fpn_output{level}.{param}",
            3,
        ),
        KeyRule(rf"neck\.fpn_convs\.3\.conv\.{_PARAM}", "backbone.top_block.p6.{param}"),
        KeyRule(rf"neck\.fpn_convs\.4\.conv\.{_PARAM}", "backbone.top_block.p7.{param}"),
        # detectron2's subnets are Sequential(conv, ReLU, conv, ReLU, ...)
        KeyRule(
            rf"bbox_head\.cls_convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "head.cls_subnet.{level}.{param}",
            level_step=2,
        ),
        KeyRule(
            rf"bbox_head\.reg_convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "head.bbox_subnet.{level}.{param}",
            level_step=2,
        ),
        KeyRule(
            rf"bbox_head\.retina_cls\.{_PARAM}",
            "head.cls_score.{param}",
            transform=RETINANET_ANCHORS,
        ),
        KeyRule(
            rf"bbox_head\.retina_reg\.{_PARAM}",
            "head.bbox_pred.{param}",
            transform=RETINANET_ANCHORS,
        ),
    ),
)

MASK_RCNN_RULES = RuleTable(
    name="Mask R-CNN (mmdet)",
    marker="roi_head.",
    rules=(
        *DENSECLIP_BACKBONE_RULES,
        KeyRule(
            rf"neck\.lateral_convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "backbone.fpn_lateral{level}.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(
            rf"neck\.fpn_convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "backbone.fpn_output{level}.{param}",
            _FIRST_LEVEL,
        ),
        # one anchor scale: the 3 ratios are in the same order in both, no permutation
        KeyRule(rf"rpn_head\.rpn_conv\.{_PARAM}", "proposal_generator.rpn_head.conv.{param}"),
        KeyRule(
            rf"rpn_head\.rpn_cls\.{_PARAM}",
            "proposal_generator.rpn_head.objectness_logits.{param}",
        ),
        KeyRule(
            rf"rpn_head\.rpn_reg\.{_PARAM}", "proposal_generator.rpn_head.anchor_deltas.{param}"
        ),
        KeyRule(
            rf"roi_head\.bbox_head\.shared_fcs\.(?P<level>\d+)\.{_PARAM}",
            "roi_heads.box_head.fc{level}.{param}",
            1,
        ),
        KeyRule(
            rf"roi_head\.bbox_head\.fc_cls\.{_PARAM}", "roi_heads.box_predictor.cls_score.{param}"
        ),
        KeyRule(
            rf"roi_head\.bbox_head\.fc_reg\.{_PARAM}", "roi_heads.box_predictor.bbox_pred.{param}"
        ),
        KeyRule(
            rf"roi_head\.mask_head\.convs\.(?P<level>\d+)\.conv\.{_PARAM}",
            "roi_heads.mask_head.mask_fcn{level}.{param}",
            1,
        ),
        KeyRule(rf"roi_head\.mask_head\.upsample\.{_PARAM}", "roi_heads.mask_head.deconv.{param}"),
        KeyRule(
            rf"roi_head\.mask_head\.conv_logits\.{_PARAM}",
            "roi_heads.mask_head.predictor.{param}",
        ),
    ),
)

RULE_TABLES: Tuple[RuleTable, ...] = (SEMANTIC_FPN_RULES, RETINANET_RULES, MASK_RCNN_RULES)
