"""The official DenseCLIP detectors at test time (mmdet 2.17 / mmcv 1.3.17) in plain PyTorch, from
the image file to the final boxes, labels and masks, for end-to-end equivalence tests.

Re-stated from raoyongming/DenseCLIP (``detection/denseclip/{denseclip,models}.py``: the
attention pool crops its positional grid, the score map is divided by τ before it joins C5) and
the mmdet 2.17.0 / mmcv 1.3.17 code the official configs run (read from their sources, written
here anew): the test pipeline (``LoadImageFromFile``, ``Resize(keep_ratio=True)`` = mmcv
``imrescale``, ``Normalize(to_rgb=True)``, ``Pad(size_divisor=32)``), ``FPN`` (``start_level``,
``add_extra_convs='on_input'`` without ReLU before P7, or max-pooled extra levels),
``AnchorGenerator`` (``center_offset=0``, ratio-major anchors), ``DeltaXYWHBBoxCoder.decode``,
``RetinaHead`` and ``AnchorHead._get_bboxes``, ``multiclass_nms`` and mmcv's ``batched_nms``
(class-offset trick), ``RPNHead._get_bboxes``, ``SingleRoIExtractor``, ``Shared2FCBBoxHead`` and
``BBoxHead.get_bboxes``, ``FCNMaskHead`` and ``get_seg_masks`` / ``_do_paste_mask``.

Stand-ins: ``torchvision.ops.nms`` for mmcv's ``nms`` kernel (both sort by score and suppress a
box whose IoU with a kept one is strictly above the threshold, offset 0) and
``torchvision.ops.roi_align(aligned=True)`` for mmcv's ``RoIAlign`` (``aligned=True``,
``sampling_ratio=0``, average pooling: the same bilinear sampling). Modules keep the official
names, so an official state dict loads with ``strict=True``. Nothing here comes from
``denseclip``; the CLIP parts are :mod:`official_reference`'s.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from official_reference import (
    FPN,
    IMG_MEAN,
    IMG_STD,
    CLIPResNet,
    CLIPTextContextEncoder,
    ContextDecoder,
    ConvModule,
    DenseCLIPTextSide,
)
from torch import nn

#: test_cfg of the official RetinaNet configs (mmdet's retinanet_r50_fpn.py)
RETINANET_TEST_CFG = dict(nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=0.5, max_per_img=100)
#: test_cfg of the official Mask R-CNN configs (mmdet's mask_rcnn_r50_fpn.py)
MASK_RCNN_TEST_CFG = dict(
    rpn=dict(nms_pre=1000, max_per_img=1000, nms=0.7, min_bbox_size=0),
    rcnn=dict(score_thr=0.05, nms=0.5, max_per_img=100, mask_thr_binary=0.5),
)
WH_RATIO_CLIP = 16 / 1000


# ----------------------------------------------------------------------------- test pipeline


def load_test_image(
    path: str, scale: Tuple[int, int], size_divisor: int = 32
) -> Tuple[torch.Tensor, dict]:
    """mmdet's test pipeline on one file → (1×3×H×W normalised, padded image; img_meta with
    ``ori_shape``, ``img_shape``, ``scale_factor`` (w, h, w, h; float32 as mmdet's))."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR
    h, w = img.shape[:2]
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))  # mmcv.rescale_size
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)  # mmcv.imresize
    rgb = img[..., ::-1].astype(np.float32)
    normalized = (rgb - np.float32(IMG_MEAN)) * (1 / np.float32(IMG_STD))  # mmcv.imnormalize
    pad_h = -(-new_h // size_divisor) * size_divisor
    pad_w = -(-new_w // size_divisor) * size_divisor
    padded = np.zeros((pad_h, pad_w, 3), np.float32)
    padded[:new_h, :new_w] = normalized
    scale_factor = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
    meta = dict(ori_shape=(h, w, 3), img_shape=(new_h, new_w, 3), scale_factor=scale_factor)
    return torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous(), meta


# ----------------------------------------------------------------------------- boxes and NMS


def delta2bbox(
    rois: torch.Tensor,
    deltas: torch.Tensor,
    stds: Sequence[float],
    max_shape: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """mmdet 2.17 ``delta2bbox`` (means 0): rois N×4, deltas N×4k → N×4k boxes, dw and dh clamped
    to ±|log(wh_ratio_clip)|, clipped to ``max_shape`` (h, w) when given."""
    denorm = deltas * deltas.new_tensor(stds).repeat(deltas.shape[-1] // 4)
    dx, dy, dw, dh = (denorm[..., i::4] for i in range(4))
    x1, y1, x2, y2 = (rois[..., i : i + 1] for i in range(4))
    px, py = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    pw, ph = x2 - x1, y2 - y1
    max_ratio = abs(np.log(WH_RATIO_CLIP))
    gw = pw * dw.clamp(min=-max_ratio, max=max_ratio).exp()
    gh = ph * dh.clamp(min=-max_ratio, max=max_ratio).exp()
    gx, gy = px + pw * dx, py + ph * dy
    boxes = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1)
    boxes = boxes.view(deltas.shape)
    if max_shape is not None:
        upper = boxes.new_tensor([max_shape[1], max_shape[0]] * (deltas.shape[-1] // 2))
        boxes = torch.where(boxes < 0, boxes.new_tensor(0.0), boxes)
        boxes = torch.where(boxes > upper, upper, boxes)
    return boxes


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """mmcv 1.3.17 ``batched_nms`` (below its split threshold of 10000 boxes): boxes of group i
    shifted by i·(max coordinate + 1), one NMS → (dets K×5 by falling score, kept indices)."""
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    keep = torchvision.ops.nms(boxes + offsets[:, None], scores, iou_threshold)
    return torch.cat([boxes[keep], scores[keep, None]], dim=1), keep


def multiclass_nms(
    boxes: torch.Tensor, scores: torch.Tensor, score_thr: float, iou_thr: float, max_num: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """mmdet 2.17 ``multiclass_nms``: boxes N×4 (shared) or N×4K, scores N×(K+1) (background
    last, ignored) → (dets M×5, labels M): every (box, class) scoring above ``score_thr``,
    per-class NMS, the ``max_num`` best."""
    num_classes = scores.shape[1] - 1
    if boxes.shape[1] > 4:
        boxes = boxes.view(scores.shape[0], -1, 4)
    else:
        boxes = boxes[:, None].expand(scores.shape[0], num_classes, 4)
    scores = scores[:, :-1]
    labels = torch.arange(num_classes).view(1, -1).expand_as(scores)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    valid = scores > score_thr
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    if boxes.numel() == 0:
        return torch.cat([boxes, scores[:, None]], -1), labels
    dets, keep = batched_nms(boxes, scores, labels, iou_thr)
    return dets[:max_num], labels[keep][:max_num]


def grid_anchors(
    featmap_sizes: Sequence[Tuple[int, int]],
    strides: Sequence[int],
    scales: Sequence[float],
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
) -> List[torch.Tensor]:
    """mmdet 2.x ``AnchorGenerator.grid_anchors`` (base size = stride, ``center_offset=0``):
    per level (h·w·A)×4, location-major (row by row), ratio-major within a location."""
    h_ratios = torch.sqrt(torch.tensor(ratios))
    w_ratios = 1 / h_ratios
    anchors = []
    for (feat_h, feat_w), stride in zip(featmap_sizes, strides):
        ws = (stride * w_ratios[:, None] * torch.tensor(scales)[None, :]).view(-1)
        hs = (stride * h_ratios[:, None] * torch.tensor(scales)[None, :]).view(-1)
        base = torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)
        shift_x = torch.arange(0, feat_w) * stride
        shift_y = torch.arange(0, feat_h) * stride
        xx = shift_x.repeat(len(shift_y))
        yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
        anchors.append((base[None] + shifts[:, None]).view(-1, 4))
    return anchors


# ----------------------------------------------------------------------------- neck and heads


class MMDetFPN(FPN):
    """mmdet 2.17 FPN: laterals from ``start_level``; ``num_outs`` levels, the extra ones by
    3×3 stride-2 convs (``add_extra_convs='on_input'``: the first reads the last input, the next
    the previous output, no ReLU between) or by max-pooling (kernel 1, stride 2)."""

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        start_level: int = 0,
        extra_convs_on_input: bool = False,
    ):
        super().__init__(in_channels[start_level:], out_channels)
        self.start_level = start_level
        self.num_outs = num_outs
        self.extra_convs_on_input = extra_convs_on_input
        if extra_convs_on_input:
            for i in range(num_outs - len(in_channels) + start_level):
                channels = in_channels[-1] if i == 0 else out_channels
                self.fpn_convs.append(ConvModule(channels, out_channels, 3, stride=2))

    def forward(self, inputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        outs = super().forward(inputs[self.start_level :])
        if self.extra_convs_on_input:
            outs.append(self.fpn_convs[len(outs)](inputs[-1]))
        while len(outs) < self.num_outs:
            if self.extra_convs_on_input:
                outs.append(self.fpn_convs[len(outs)](outs[-1]))
            else:
                outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs


class RetinaHead(nn.Module):
    """mmdet RetinaHead: 4 conv+ReLU per branch, then 3×3 ``retina_cls`` (A·K) and
    ``retina_reg`` (A·4)."""

    def __init__(self, num_classes: int, channels: int, num_anchors: int = 9, stacked: int = 4):
        super().__init__()
        self.cls_convs = nn.ModuleList(
            [ConvModule(channels, channels, 3, relu=True) for _ in range(stacked)]
        )
        self.reg_convs = nn.ModuleList(
            [ConvModule(channels, channels, 3, relu=True) for _ in range(stacked)]
        )
        self.retina_cls = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        self.num_classes = num_classes

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[List, List]:
        cls_scores, bbox_preds = [], []
        for x in feats:
            cls_feat, reg_feat = x, x
            for conv in self.cls_convs:
                cls_feat = conv(cls_feat)
            for conv in self.reg_convs:
                reg_feat = conv(reg_feat)
            cls_scores.append(self.retina_cls(cls_feat))
            bbox_preds.append(self.retina_reg(reg_feat))
        return cls_scores, bbox_preds


class RPNHead(nn.Module):
    """mmdet RPNHead: 3×3 ``rpn_conv`` + ReLU, 1×1 ``rpn_cls`` (A, sigmoid) and ``rpn_reg``."""

    def __init__(self, channels: int, num_anchors: int = 3):
        super().__init__()
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> Tuple[List, List]:
        outs = [F.relu(self.rpn_conv(x)) for x in feats]
        return [self.rpn_cls(x) for x in outs], [self.rpn_reg(x) for x in outs]


class Shared2FCBBoxHead(nn.Module):
    """mmdet Shared2FCBBoxHead: flatten, 2 × (fc + ReLU), ``fc_cls`` (K+1), ``fc_reg`` (4K)."""

    def __init__(self, num_classes: int, in_channels: int, fc_channels: int, roi_size: int = 7):
        super().__init__()
        self.shared_fcs = nn.ModuleList(
            [nn.Linear(in_channels * roi_size**2, fc_channels), nn.Linear(fc_channels, fc_channels)]
        )
        self.fc_cls = nn.Linear(fc_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_channels, 4 * num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    """mmdet FCNMaskHead: 4 conv+ReLU, 2× deconv ``upsample`` + ReLU, 1×1 ``conv_logits`` (K)."""

    def __init__(self, num_classes: int, channels: int, num_convs: int = 4):
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvModule(channels, channels, 3, relu=True) for _ in range(num_convs)]
        )
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))


def roi_extract(
    feats: Sequence[torch.Tensor], boxes: torch.Tensor, output_size: int, strides: Sequence[int]
) -> torch.Tensor:
    """mmdet SingleRoIExtractor (finest_scale 56) over one image's levels: level
    ``floor(log2(sqrt(area) / 56 + 1e-6))`` clamped, RoIAlign (aligned, adaptive sampling)."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    levels = torch.floor(torch.log2(scale / 56 + 1e-6)).clamp(0, len(strides) - 1).long()
    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], dim=1)
    out = feats[0].new_zeros(len(boxes), feats[0].shape[1], output_size, output_size)
    for i, stride in enumerate(strides):
        inds = torch.nonzero(levels == i).squeeze(1)
        if len(inds):
            out[inds] = torchvision.ops.roi_align(
                feats[i], rois[inds], output_size, 1 / stride, sampling_ratio=0, aligned=True
            )
    return out


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, img_h: int, img_w: int, threshold: float
) -> torch.Tensor:
    """mmdet ``get_seg_masks`` on the CPU: each N×m×m probability mask pasted into its box of the
    img_h×img_w image one at a time (``_do_paste_mask`` with ``skip_empty``: grid_sample over the
    box's integer neighbourhood) and thresholded (≥) → N×img_h×img_w bool."""
    out = torch.zeros(len(masks), img_h, img_w, dtype=torch.bool)
    for i, (mask, box) in enumerate(zip(masks, boxes)):
        x0_int, y0_int = torch.clamp(box[:2].floor() - 1, min=0).int().tolist()
        x1_int = int(torch.clamp(box[2].ceil() + 1, max=img_w))
        y1_int = int(torch.clamp(box[3].ceil() + 1, max=img_h))
        x0, y0, x1, y1 = box
        img_y = (torch.arange(y0_int, y1_int, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        img_x = (torch.arange(x0_int, x1_int, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        img_x[torch.isinf(img_x)] = 0
        img_y[torch.isinf(img_y)] = 0
        gx = img_x[None, :].expand(len(img_y), len(img_x))
        gy = img_y[:, None].expand(len(img_y), len(img_x))
        grid = torch.stack([gx, gy], dim=2)[None]
        pasted = F.grid_sample(mask[None, None], grid, align_corners=False)[0, 0]
        out[i, y0_int:y1_int, x0_int:x1_int] = pasted >= threshold
    return out


# ----------------------------------------------------------------------------- detectors


class OfficialDetector(nn.Module, DenseCLIPTextSide):
    """The official detectors' shared part: the CLIP ResNet (with the attention pool cropping
    its positional grid and the text side for DenseCLIP; alone for the CLIP baselines) and the
    FPN ``neck``; ``extract_feat`` appends the score map / τ to C5 (DenseCLIP)."""

    def __init__(
        self,
        backbone: CLIPResNet,
        neck: MMDetFPN,
        text_encoder: Optional[CLIPTextContextEncoder] = None,
        context_decoder: Optional[ContextDecoder] = None,
        class_names: Sequence[str] = (),
        tau: float = 0.07,
    ):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.with_text = text_encoder is not None
        if self.with_text:
            self.init_text_side(text_encoder, context_decoder, class_names)
        self.tau = tau

    def extract_feat(self, img: torch.Tensor) -> List[torch.Tensor]:
        x = self.backbone(img)
        x = self.concat_score_map(x, 3, 1 / self.tau) if self.with_text else list(x)
        return self.neck(x)

    def extract_feat_with_seg_map(
        self, img: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """``extract_feat(img, use_seg_loss=True)`` of the official training step, stopped before
        the neck (DenseCLIP): → (C2..C5 with the score map / τ concatenated to C5, i.e. the
        neck's input; that score map / τ resized bilinearly to C2's size, the auxiliary loss's
        input ``score_maps[0]``)."""
        x = self.backbone(img)
        feats = self.concat_score_map(x, 3, 1 / self.tau)
        score_map = feats[3][:, -len(self.texts) :]  # the channels just concatenated
        score_map0 = F.interpolate(score_map, x[0].shape[2:], mode="bilinear", align_corners=False)
        return feats, score_map0


class OfficialRetinaNet(OfficialDetector):
    """``DenseCLIP_RetinaNet`` / RetinaNet at test time: ``bbox_head`` (RetinaHead) and
    ``AnchorHead._get_bboxes`` with the official test_cfg.

    Args:
        anchor_scales: the anchor sizes in strides: ``octave_base_scale · 2^(i/3)``, i < 3.
        strides: of P3–P7.
    """

    def __init__(
        self,
        bbox_head: RetinaHead,
        anchor_scales: Sequence[float],
        strides: Sequence[int] = (8, 16, 32, 64, 128),
        test_cfg: Dict = RETINANET_TEST_CFG,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.bbox_head = bbox_head
        self.anchor_scales = list(anchor_scales)
        self.strides = list(strides)
        self.test_cfg = test_cfg

    @torch.no_grad()
    def simple_test(self, img: torch.Tensor, meta: dict) -> Tuple[torch.Tensor, torch.Tensor]:
        """One image → (dets M×5 in original-image pixels with scores, labels M)."""
        cls_scores, bbox_preds = self.bbox_head(self.extract_feat(img))
        cfg, num_classes = self.test_cfg, self.bbox_head.num_classes
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = grid_anchors(sizes, self.strides, self.anchor_scales)
        mlvl_boxes, mlvl_scores = [], []
        for cls_score, bbox_pred, level_anchors in zip(cls_scores, bbox_preds, anchors):
            scores = cls_score[0].permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            if 0 < cfg["nms_pre"] < len(scores):
                _, topk = scores.max(dim=1).values.topk(cfg["nms_pre"])
                scores, deltas, level_anchors = scores[topk], deltas[topk], level_anchors[topk]
            mlvl_boxes.append(delta2bbox(level_anchors, deltas, [1.0] * 4, meta["img_shape"]))
            mlvl_scores.append(scores)
        boxes = torch.cat(mlvl_boxes) / torch.from_numpy(meta["scale_factor"])
        scores = torch.cat(mlvl_scores)
        scores = torch.cat([scores, scores.new_zeros(len(scores), 1)], dim=1)  # background
        return multiclass_nms(boxes, scores, cfg["score_thr"], cfg["nms"], cfg["max_per_img"])


class RoIHead(nn.Module):
    """StandardRoIHead's parameters: ``bbox_head`` and ``mask_head``."""

    def __init__(self, bbox_head: Shared2FCBBoxHead, mask_head: FCNMaskHead):
        super().__init__()
        self.bbox_head = bbox_head
        self.mask_head = mask_head


class OfficialMaskRCNN(OfficialDetector):
    """``DenseCLIP_MaskRCNN`` / Mask R-CNN at test time: ``rpn_head`` proposals, ``roi_head``
    boxes and masks with the official test_cfg.

    Args:
        rpn_scale: the RPN anchor size in strides (mmdet ``scales=[8]``).
        strides: of P2–P6 (the RoI extractors read P2–P5).
    """

    def __init__(
        self,
        rpn_head: RPNHead,
        roi_head: RoIHead,
        rpn_scale: float = 8,
        strides: Sequence[int] = (4, 8, 16, 32, 64),
        test_cfg: Dict = MASK_RCNN_TEST_CFG,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.rpn_scale = rpn_scale
        self.strides = list(strides)
        self.test_cfg = test_cfg

    def proposals(self, feats: Sequence[torch.Tensor], meta: dict) -> torch.Tensor:
        """``RPNHead._get_bboxes`` for one image → P×5 (boxes in the resized image, score)."""
        cfg = self.test_cfg["rpn"]
        cls_scores, bbox_preds = self.rpn_head(feats)
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = grid_anchors(sizes, self.strides, [self.rpn_scale])
        mlvl_scores, mlvl_deltas, mlvl_anchors, level_ids = [], [], [], []
        for level, (cls_score, bbox_pred) in enumerate(zip(cls_scores, bbox_preds)):
            scores = cls_score[0].permute(1, 2, 0).reshape(-1).sigmoid()
            deltas = bbox_pred[0].permute(1, 2, 0).reshape(-1, 4)
            level_anchors = anchors[level]
            if 0 < cfg["nms_pre"] < len(scores):
                scores, order = scores.sort(descending=True)
                scores, order = scores[: cfg["nms_pre"]], order[: cfg["nms_pre"]]
                deltas, level_anchors = deltas[order], level_anchors[order]
            mlvl_scores.append(scores)
            mlvl_deltas.append(deltas)
            mlvl_anchors.append(level_anchors)
            level_ids.append(torch.full((len(scores),), level, dtype=torch.long))
        scores, ids = torch.cat(mlvl_scores), torch.cat(level_ids)
        boxes = delta2bbox(
            torch.cat(mlvl_anchors), torch.cat(mlvl_deltas), [1.0] * 4, meta["img_shape"]
        )
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (w > cfg["min_bbox_size"]) & (h > cfg["min_bbox_size"])
        dets, _ = batched_nms(boxes[valid], scores[valid], ids[valid], cfg["nms"])
        return dets[: cfg["max_per_img"]]

    @torch.no_grad()
    def simple_test(
        self, img: torch.Tensor, meta: dict
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One image → (dets M×5 in original-image pixels, labels M, masks M×H×W bool at the
        original size)."""
        cfg = self.test_cfg["rcnn"]
        feats = self.extract_feat(img)
        proposals = self.proposals(feats, meta)[:, :4]
        roi_strides = self.strides[:4]
        bbox_head, mask_head = self.roi_head.bbox_head, self.roi_head.mask_head
        cls_score, bbox_pred = bbox_head(roi_extract(feats[:4], proposals, 7, roi_strides))
        boxes = delta2bbox(proposals, bbox_pred, [0.1, 0.1, 0.2, 0.2], meta["img_shape"])
        scale_factor = torch.from_numpy(meta["scale_factor"])
        boxes = (boxes.view(len(boxes), -1, 4) / scale_factor).view(len(boxes), -1)
        dets, labels = multiclass_nms(
            boxes, F.softmax(cls_score, dim=-1), cfg["score_thr"], cfg["nms"], cfg["max_per_img"]
        )
        ori_h, ori_w = meta["ori_shape"][:2]
        if len(dets) == 0:
            return dets, labels, torch.zeros(0, ori_h, ori_w, dtype=torch.bool)
        mask_boxes = dets[:, :4] * scale_factor  # back to the resized image for the RoIs
        mask_pred = mask_head(roi_extract(feats[:4], mask_boxes, 14, roi_strides))
        probs = mask_pred.sigmoid()[torch.arange(len(dets)), labels]
        masks = paste_masks(probs, mask_boxes / scale_factor, ori_h, ori_w, cfg["mask_thr_binary"])
        return dets, labels, masks


# ----------------------------------------------------------------------------- training


def build_seg_target(
    img_shape: Sequence[int],
    gt_bboxes: Sequence[torch.Tensor],
    gt_labels: Sequence[torch.Tensor],
    num_classes: int,
    dtype: torch.dtype = torch.float32,
    clamp: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Official ``build_seg_target`` of both DenseCLIP detectors: on the (H // 4)×(W // 4) grid of
    the padded batch (``img_shape`` B×3×H×W), each box divided by 4 and truncated (``.long()``),
    x clamped to [0, W/4 - 1] and y to [0, H/4 - 1] (``clamp=False``: not clamped, a negative
    control), then ``target[i, label, y1:y2, x1:x2] = 1`` and the same rows and columns of the
    mask (all classes) set to 1, box by box. → (target B×K×h×w, mask B×K×h×w) in ``dtype``
    (float32 in the official code, where everything else is float32 too)."""
    B, _, H, W = img_shape
    H //= 4
    W //= 4
    target = torch.zeros(B, num_classes, H, W, dtype=dtype)
    mask = torch.zeros(B, 1, H, W, dtype=dtype)
    for i, (bboxes, labels) in enumerate(zip(gt_bboxes, gt_labels)):
        bboxes = (bboxes / 4).long()
        if clamp:
            bboxes[:, 0] = bboxes[:, 0].clamp(0, W - 1)
            bboxes[:, 1] = bboxes[:, 1].clamp(0, H - 1)
            bboxes[:, 2] = bboxes[:, 2].clamp(0, W - 1)
            bboxes[:, 3] = bboxes[:, 3].clamp(0, H - 1)
        for bbox, label in zip(bboxes, labels):
            target[i, label, bbox[1] : bbox[3], bbox[0] : bbox[2]] = 1
            mask[i, :, bbox[1] : bbox[3], bbox[0] : bbox[2]] = 1
    return target, mask.expand(-1, num_classes, -1, -1)


def compute_seg_loss(
    score_map: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Official ``compute_seg_loss`` (``loss_seg`` of RetinaNet, ``loss_aux_seg`` of Mask R-CNN):
    ``binary_cross_entropy(sigmoid(score_map), target, weight=mask, reduction='sum') /
    mask.sum()``, ``score_map`` being ``score_maps[0]`` of
    :meth:`OfficialDetector.extract_feat_with_seg_map`."""
    loss = F.binary_cross_entropy(torch.sigmoid(score_map), target, weight=mask, reduction="sum")
    return loss / mask.sum()
