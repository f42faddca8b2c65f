"""Official DenseCLIP detection checkpoints give the official evaluation's detections end to end:
from an image file on disk to the final boxes, scores, labels and masks, our converted model
(detectron2 data mapper with the COCO configs' mmcv resize, the model with mmdet's inference
switches, detector post-processing) agrees with an independent restatement of mmdet 2.17's test
path (tests/mmdet_reference.py) on the same official-format checkpoint.

The models have the tiny synthetic configs' widths, so that the test is fast; the official
checkpoint is the reference model's own state dict (official names by construction), written
to disk in the mmcv format and converted by ``denseclip.checkpoint.official``. Sections: the
RetinaNet and Mask R-CNN detections of random checkpoints, each inference switch on hand-made
predictions, and COCO AP of models that detect (section comment there).
"""

import contextlib
import functools
import io
import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO_ROOT
from mmdet_reference import (
    MASK_RCNN_TEST_CFG,
    RETINANET_TEST_CFG,
    FCNMaskHead,
    MMDetFPN,
    OfficialMaskRCNN,
    OfficialRetinaNet,
    RetinaHead,
    RoIHead,
    RPNHead,
    Shared2FCBBoxHead,
    grid_anchors,
    load_test_image,
    roi_extract,
)
from official_reference import CLIPResNet, CLIPTextContextEncoder, ContextDecoder, randomize_
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torchvision.ops import box_iou, roi_align, sigmoid_focal_loss

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances

from denseclip.checkpoint.official import convert_official_state_dict, load_official_checkpoint
from denseclip.checkpoint.official_rules import RETINANET_ANCHORS
from denseclip.data import SYNTHETIC_DET_CLASSES, KeepRatioResize
from denseclip.data.folder import coco_instances_path
from denseclip.data.synthetic import synthetic_detection_root
from denseclip.meta_arch import (
    MMDetStyleRetinaNet,
    SymmetricClampBox2BoxTransform,
    rescale_detections,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

#: the test resize (the COCO configs' KeepRatioResize at a scale for the tiny models' 128 px
#: positional grid): 75×101 → 95×128, 120×90 → 128×96, 50×64 → 75×96 (none a multiple of 32)
TEST_SCALE = (128, 96)
IMAGE_SIZES = [(75, 101), (120, 90), (50, 64)]
NUM_CLASSES = len(SYNTHETIC_DET_CLASSES)
MIN_SCORE = 0.1  # detections compared
WIDTH, EMBED_DIM, FPN_CHANNELS = 16, 64, 64  # the tiny configs' sizes


def tiny_official_backbone(with_text: bool) -> dict:
    """The official backbone (and text side) at the tiny configs' sizes."""
    parts = dict(
        backbone=CLIPResNet(
            [1, 1, 1, 1], WIDTH, EMBED_DIM, 128, with_attention=with_text, pos_embed="crop"
        )
    )
    if with_text:
        parts["text_encoder"] = CLIPTextContextEncoder(13, 64, 4, 2, EMBED_DIM)
        parts["context_decoder"] = ContextDecoder(32, 4, 1, EMBED_DIM)
        parts["class_names"] = SYNTHETIC_DET_CLASSES
    return parts


def c5_channels(with_text: bool) -> int:
    return WIDTH * 32 + (NUM_CLASSES if with_text else 0)


def official_retinanet(with_text: bool) -> OfficialRetinaNet:
    """retinanet_*_tiny in official form: FPN P3–P7 (64), 2 stacked head convs, anchors of
    octave base scale 2 (half the COCO sizes)."""
    in_channels = [WIDTH * 4, WIDTH * 8, WIDTH * 16, c5_channels(with_text)]
    return OfficialRetinaNet(
        bbox_head=RetinaHead(NUM_CLASSES, FPN_CHANNELS, stacked=2),
        anchor_scales=[2 * 2 ** (i / 3) for i in range(3)],
        neck=MMDetFPN(in_channels, FPN_CHANNELS, 5, start_level=1, extra_convs_on_input=True),
        **tiny_official_backbone(with_text),
    )


def official_mask_rcnn(with_text: bool) -> OfficialMaskRCNN:
    """mask_rcnn_*_tiny in official form: FPN P2–P6 (64), RPN anchors of scale 4, 2 FCs of 256,
    a mask head of 2 convs."""
    in_channels = [WIDTH * 4, WIDTH * 8, WIDTH * 16, c5_channels(with_text)]
    return OfficialMaskRCNN(
        rpn_head=RPNHead(FPN_CHANNELS),
        roi_head=RoIHead(
            Shared2FCBBoxHead(NUM_CLASSES, FPN_CHANNELS, 256),
            FCNMaskHead(NUM_CLASSES, FPN_CHANNELS, num_convs=2),
        ),
        rpn_scale=4,
        neck=MMDetFPN(in_channels, FPN_CHANNELS, 5),
        **tiny_official_backbone(with_text),
    )


def write_images(folder) -> list:
    """Smooth random JPEG files (COCO's format) of ``IMAGE_SIZES``: dataset dicts."""
    rng = np.random.default_rng(0)
    dicts = []
    for i, (h, w) in enumerate(IMAGE_SIZES):
        image = cv2.GaussianBlur((rng.random((h, w, 3)) * 255).astype(np.uint8), (7, 7), 3)
        path = str(folder / f"image_{i}.jpg")
        cv2.imwrite(path, image)
        dicts.append({"file_name": path, "height": h, "width": w, "image_id": i})
    return dicts


@functools.lru_cache(maxsize=None)
def tiny_model_config(config: str):
    """The model node of ``configs/Synthetic/{config}`` (loaded once: loading takes seconds), with
    the official code's 32 attention-pool heads (the tiny configs take CLIP's width·32/64)."""
    model = LazyConfig.load(os.path.join(REPO_ROOT, "configs/Synthetic", config)).model
    model.backbone.bottom_up.image_encoder.heads = 32
    return model


def convert_to_ours(config: str, official: torch.nn.Module, folder):
    """``official``'s state dict as an mmcv checkpoint file → our model of ``config`` (eval)."""
    path = str(folder / "official.pth")
    torch.save({"meta": {}, "state_dict": official.state_dict()}, path)
    state_dict, _ = load_official_checkpoint(path)
    model = instantiate(tiny_model_config(config)).eval()
    model.load_state_dict(convert_official_state_dict(state_dict).state_dict, strict=True)
    return model


@functools.lru_cache(maxsize=None)
def coco_test_mapper(scale):
    """The COCO configs' test mapper (its class, image format and mmcv resize), resizing to
    ``scale`` instead of (1333, 800)."""
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/common/data/coco_detection.py"))
    cfg.dataloader.test.mapper.augmentations = [L(KeepRatioResize)(scale=scale, backend="opencv")]
    return instantiate(cfg.dataloader.test.mapper)


def our_detections(model, dataset_dicts, scale=TEST_SCALE) -> list:
    """Our evaluation path: the COCO configs' test mapper (:func:`coco_test_mapper`), the
    model."""
    mapper = coco_test_mapper(scale)
    with torch.no_grad():
        return [model([mapper(dict(d))])[0]["instances"] for d in dataset_dicts]


def official_detections(official, dataset_dicts, scale=TEST_SCALE) -> list:
    """The official evaluation path, as Instances at the original size."""
    results = []
    for d in dataset_dicts:
        outputs = official.simple_test(*load_test_image(d["file_name"], scale))
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(outputs[0][:, :4])
        instances.scores = outputs[0][:, 4]
        instances.pred_classes = outputs[1]
        if len(outputs) == 3:
            instances.pred_masks = outputs[2]
        results.append(instances)
    return results


def matched_fraction(ours: Instances, theirs: Instances) -> float:
    """The fraction of ``theirs`` (score ≥ MIN_SCORE) that ``ours`` has: same class, score
    within 1e-4, box IoU ≥ 0.99 (equal corners within 1e-3 px for empty boxes) and, with masks,
    mask IoU ≥ 0.99."""
    ours, theirs = ours[ours.scores >= MIN_SCORE], theirs[theirs.scores >= MIN_SCORE]
    if len(theirs) == 0:
        return 1.0
    a, b = ours.pred_boxes.tensor, theirs.pred_boxes.tensor
    same_box = (box_iou(a, b) >= 0.99) | ((a[:, None] - b[None]).abs().amax(dim=2) <= 1e-3)
    same = (
        same_box
        & (ours.pred_classes[:, None] == theirs.pred_classes[None])
        & ((ours.scores[:, None] - theirs.scores[None]).abs() <= 1e-4)
    )
    if theirs.has("pred_masks"):
        m1 = ours.pred_masks.flatten(1).float()
        m2 = theirs.pred_masks.flatten(1).float()
        inter = m1 @ m2.T
        union = m1.sum(1)[:, None] + m2.sum(1)[None] - inter
        same &= torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter)) >= 0.99
    return same.any(dim=0).float().mean().item()


def at_border(instances: Instances) -> torch.Tensor:
    height, width = instances.image_size
    boxes = instances.pred_boxes.tensor
    return (boxes[:, :2] <= 0).any(dim=1) | (boxes[:, 2] >= width) | (boxes[:, 3] >= height)


# ----------------------------------------------------------------------------- RetinaNet


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("pipeline_images"))


@pytest.fixture(scope="module", params=[True, False], ids=["denseclip", "clip"])
def retinanet_pair(request, tmp_path_factory):
    """(ours, official) RetinaNet from one random official checkpoint whose class logits are
    spread (×10) around a low bias, so that a few percent of the anchors score above 0.1, as for
    a trained model. ``nms_pre`` (our ``test_topk_candidates``) is 100 instead of 1000: a level
    of these small images has at most 1728 anchors, a COCO-size image's finest level 151 200,
    so this is the regime where the candidate selection matters."""
    with_text = request.param
    official = randomize_(official_retinanet(with_text), seed=0).eval()
    official.test_cfg = dict(RETINANET_TEST_CFG, nms_pre=100)
    with torch.no_grad():
        official.bbox_head.retina_cls.weight.mul_(10)
        official.bbox_head.retina_cls.bias.fill_(-6)
    config = "retinanet_denseclip_tiny.py" if with_text else "retinanet_clip_tiny.py"
    ours = convert_to_ours(config, official, tmp_path_factory.mktemp("retinanet"))
    ours.test_topk_candidates = 100
    return ours, official


def assert_same_detections(ours: list, theirs: list) -> None:
    for a, b in zip(ours, theirs):
        assert a.image_size == b.image_size
        assert matched_fraction(a, b) >= 0.99 and matched_fraction(b, a) >= 0.99
    kept = [x[x.scores >= MIN_SCORE] for x in theirs]
    assert sum(len(x) for x in kept) >= 30  # enough detections to compare
    assert sum(at_border(x).sum().item() for x in kept) >= 3  # boxes clipped at the border


def test_retinanet_detections_are_the_official_ones_from_the_image_file(retinanet_pair, images):
    ours, official = retinanet_pair
    assert_same_detections(our_detections(ours, images), official_detections(official, images))


@pytest.mark.parametrize("retinanet_pair", [True], ids=["denseclip"], indirect=True)
@pytest.mark.parametrize(
    "switch, stock", [("candidate_selection", "detectron2"), ("clip_boxes_before_nms", False)]
)
def test_retinanet_with_detectrons_inference_step_differs(retinanet_pair, images, switch, stock):
    """Each RetinaNet switch matters on these images (DenseCLIP's checkpoint): detectron2's step
    alone changes some of the final detections."""
    ours, official = retinanet_pair
    theirs = official_detections(official, images)
    official_value = getattr(ours, switch)
    setattr(ours, switch, stock)
    try:
        mine = our_detections(ours, images)
    finally:
        setattr(ours, switch, official_value)
    assert min(matched_fraction(a, b) for a, b in zip(mine, theirs)) < 0.99


# ----------------------------------------------------------------------------- Mask R-CNN


@pytest.fixture(scope="module")
def mask_rcnn_pair(tmp_path_factory):
    """(ours, official) DenseCLIP Mask R-CNN from one random official checkpoint, with the
    official RPN test numbers (1000 per level before NMS, 1000 after; the tiny configs use
    fewer). The CLIP baseline differs in the backbone alone, which the RetinaNet test covers."""
    official = randomize_(official_mask_rcnn(True), seed=0).eval()
    with torch.no_grad():  # a spread of class scores, as for a trained model
        official.roi_head.bbox_head.fc_cls.weight.mul_(4)
    ours = convert_to_ours(
        "mask_rcnn_denseclip_tiny.py", official, tmp_path_factory.mktemp("mrcnn")
    )
    ours.proposal_generator.pre_nms_topk[False] = 1000
    ours.proposal_generator.post_nms_topk[False] = 1000
    return ours, official


def test_mask_rcnn_detections_and_masks_are_the_official_ones_from_the_image_file(
    mask_rcnn_pair, images
):
    ours, official = mask_rcnn_pair
    mine, theirs = our_detections(ours, images), official_detections(official, images)
    assert_same_detections(mine, theirs)
    assert all(x.pred_masks.shape[1:] == x.image_size for x in mine)
    assert sum(x.pred_masks.sum().item() for x in theirs) > 0


# ----------------------------------------------------------------------------- the switches


def test_symmetric_clamp_shrinks_a_box_at_most_62_5_times_and_grows_it_as_detectron2():
    box = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    deltas = torch.tensor([[0.0, 0.0, -10.0, 10.0]])  # dw far below, dh far above the clamp
    ours = SymmetricClampBox2BoxTransform((1.0, 1.0, 1.0, 1.0)).apply_deltas(deltas, box)[0]
    stock = Box2BoxTransform((1.0, 1.0, 1.0, 1.0)).apply_deltas(deltas, box)[0]
    assert (ours[2] - ours[0]).item() == pytest.approx(100 / 62.5)  # exp(-log(1000/16))
    assert (stock[2] - stock[0]).item() == pytest.approx(100 * np.exp(-10), rel=1e-3)
    assert (ours[3] - ours[1]).item() == pytest.approx((stock[3] - stock[1]).item())  # 6250
    weighted = SymmetricClampBox2BoxTransform((10.0, 10.0, 5.0, 5.0)).apply_deltas(
        deltas * 5, box  # the box head's weights: the clamp applies to deltas / 5
    )[0]
    torch.testing.assert_close(weighted, ours)


@pytest.fixture(scope="module")
def stock_retinanet():
    """The tiny CLIP RetinaNet (no text side), switches at detectron2's defaults, for
    hand-made predictions."""
    model = instantiate(tiny_model_config("retinanet_clip_tiny.py")).eval()
    model.candidate_selection, model.clip_boxes_before_nms = "detectron2", False
    return model


def _decode(model, anchors, scores, topk, **switches):
    """One level of hand-made predictions (zero deltas) through the per-image inference."""
    for name, value in switches.items():
        setattr(model, name, value)
    model.test_topk_candidates = topk
    anchors = torch.tensor(anchors, dtype=torch.float32)
    return model.inference_single_image(
        [Boxes(anchors)], [torch.tensor(scores)], [torch.zeros(len(anchors), 4)], (100, 100)
    )


def test_mmdet_candidates_are_the_best_anchors_with_every_class_above_the_threshold(
    stock_retinanet,
):
    anchors = [[0, 0, 10, 10], [50, 50, 60, 60]]
    scores = [[0.9, 0.8], [0.95, 0.0]]  # best pairs (1, 0), (0, 0); best anchors 1, 0
    detectron2 = _decode(stock_retinanet, anchors, scores, 2, candidate_selection="detectron2")
    mmdet = _decode(stock_retinanet, anchors, scores, 2, candidate_selection="mmdet")
    assert sorted(detectron2.scores.tolist()) == pytest.approx([0.9, 0.95])
    assert sorted(mmdet.scores.tolist()) == pytest.approx([0.8, 0.9, 0.95])
    one = _decode(stock_retinanet, anchors, scores, 1, candidate_selection="mmdet")
    assert one.scores.tolist() == pytest.approx([0.95])  # the other anchor's pairs are dropped


def test_traced_mmdet_candidate_selection_follows_the_level_size():
    """Exported graphs are traced on a small image: the top-k must still apply to larger levels."""
    select = MMDetStyleRetinaNet._mmdet_candidate_anchors
    traced = torch.jit.trace(lambda scores: select(scores, 3), (torch.rand(2, 4),))
    scores = torch.rand(10, 4, generator=torch.Generator().manual_seed(0))
    assert traced(scores).tolist() == select(scores, 3).tolist()  # 3 of 10, as eager
    assert sorted(traced(scores[:2]).tolist()) == [0, 1]  # a level smaller than k: all


def test_boxes_clipped_before_nms_suppress_each_other_at_the_border(stock_retinanet):
    # same class: IoU 5000/11000 < 0.5 as decoded, 5000/6000 > 0.5 once A is clipped at x = 0
    anchors = [[-50, 0, 50, 100], [0, 0, 60, 100]]
    scores = [[0.9], [0.8]]
    kept = {
        clip: _decode(stock_retinanet, anchors, scores, 1000, clip_boxes_before_nms=clip)
        for clip in (False, True)
    }
    assert kept[False].scores.tolist() == pytest.approx([0.9, 0.8])
    assert kept[True].scores.tolist() == pytest.approx([0.9])
    assert kept[True].pred_boxes.tensor.tolist() == [[0.0, 0.0, 50.0, 100.0]]


@pytest.mark.parametrize("drop, expected", [(True, 1), (False, 2)])
def test_empty_boxes_are_kept_unless_dropped(drop, expected):
    results = Instances((50, 50))
    results.pred_boxes = Boxes(torch.tensor([[10.0, 10.0, 20.0, 20.0], [60.0, 0.0, 70.0, 10.0]]))
    results.scores = torch.tensor([0.9, 0.8])
    output = rescale_detections(results, 100, 100, drop_empty_boxes=drop)  # ×2, clipped at 100
    assert len(output) == expected
    assert output.pred_boxes.tensor[0].tolist() == [20.0, 20.0, 40.0, 40.0]
    if not drop:
        assert output.pred_boxes.tensor[1].tolist() == [100.0, 0.0, 100.0, 20.0]


@pytest.mark.parametrize(
    "config", ["retinanet_clip_r101_fpn_1x_coco.py", "mask_rcnn_clip_r101_fpn_1x_coco.py"]
)
def test_official_coco_configs_default_to_the_official_inference(config):
    """The CLIP RN101 baselines are built from every other COCO config of their architecture
    (DenseCLIP RN50 → CLIP RN50 → CLIP RN101), so they see the switches of all."""
    model = LazyConfig.load(os.path.join(REPO_ROOT, "configs/COCO", config)).model
    assert model.drop_empty_boxes is False
    if config.startswith("retinanet"):
        assert model.candidate_selection == "mmdet" and model.clip_boxes_before_nms is True
        transforms = [model.box2box_transform]
    else:
        transforms = [
            model.proposal_generator.box2box_transform,
            model.roi_heads.box_predictor.box2box_transform,
        ]
    assert all(t._target_ is SymmetricClampBox2BoxTransform for t in transforms)


# ----------------------------------------------------------------------------- COCO AP
#
# Random weights detect nothing (AP ≈ 0), so the AP comparison needs weights that detect. Training
# a tiny detector takes minutes; instead the reference model's last layers (the dense predictors
# retina_cls / retina_reg / rpn_cls / rpn_reg, the box head's fc_cls / fc_reg and the mask head's
# conv_logits) are fitted in seconds, by gradient descent on frozen random-network features, to an
# easy synthetic COCO-layout set (bright circles, squares and triangles on dark noise). The fitted
# official-format checkpoint is then evaluated both ways on held-out images.

SHAPES_TRAIN_SIZE = (96, 96)
SHAPES_VAL_SIZE = (90, 110)  # → 96×117 at TEST_SCALE, padded to 96×128


def draw_shapes(folder, count: int, size, seed: int):
    """``count`` PNG images of 1–3 non-overlapping shapes (class 0 circle, 1 square, 2 triangle,
    12–40 px, some at the border) → (dataset dicts, the COCO instances file)."""
    rng = np.random.default_rng(seed)
    height, width = size
    images, annotations, dicts = [], [], []
    for index in range(count):
        image = np.clip(rng.normal(40, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        taken = np.zeros((height, width), bool)
        for _ in range(rng.integers(1, 4)):
            label, side = int(rng.integers(0, 3)), int(rng.integers(12, 41))
            x, y = int(rng.integers(-side // 3, width - side // 2)), int(
                rng.integers(-side // 3, height - side // 2)
            )
            mask = np.zeros((height, width), np.uint8)
            if label == 0:
                cv2.circle(mask, (x + side // 2, y + side // 2), side // 2, 1, -1)
            elif label == 1:
                cv2.rectangle(mask, (x, y), (x + side - 1, y + side - 1), 1, -1)
            else:
                corners = np.array(
                    [[x + side // 2, y], [x, y + side - 1], [x + side - 1, y + side - 1]]
                )
                cv2.fillPoly(mask, [corners.astype(np.int32)], 1)
            mask = mask.astype(bool)
            if mask.sum() < 40 or (mask & taken).any():
                continue
            taken |= mask
            image[mask] = rng.integers(150, 256, 3)
            ys, xs = np.nonzero(mask)
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": label + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "area": float(mask.sum()),
                    "segmentation": rle,
                    "iscrowd": 0,
                }
            )
        path = str(folder / f"shapes_{seed}_{index}.png")
        cv2.imwrite(path, image)
        images.append({"id": index, "file_name": path, "height": height, "width": width})
        dicts.append({"file_name": path, "height": height, "width": width, "image_id": index})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(SYNTHETIC_DET_CLASSES)]
    coco_file = str(folder / f"instances_{seed}.json")
    with open(coco_file, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return dicts, coco_file


def training_samples(dicts, coco_file) -> list:
    """(image 1×3×H×W, meta, boxes N×4, labels N, masks N×H×W) of images kept at their size."""
    gt = COCO(coco_file)
    samples = []
    for d in dicts:
        img, meta = load_test_image(d["file_name"], SHAPES_TRAIN_SIZE)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=d["image_id"]))
        boxes = torch.tensor([a["bbox"] for a in anns])  # x, y, w, h
        boxes[:, 2:] += boxes[:, :2]
        labels = torch.tensor([a["category_id"] - 1 for a in anns])
        masks = torch.from_numpy(np.stack([gt.annToMask(a) for a in anns])).float()
        samples.append((img, meta, boxes, labels, masks))
    return samples


def encode(boxes: torch.Tensor, targets: torch.Tensor, stds) -> torch.Tensor:
    """mmdet bbox2delta (means 0): the deltas that decode ``boxes`` into ``targets``."""
    pw, ph = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    gw, gh = targets[:, 2] - targets[:, 0], targets[:, 3] - targets[:, 1]
    deltas = torch.stack(
        [
            ((targets[:, 0] + targets[:, 2]) - (boxes[:, 0] + boxes[:, 2])) * 0.5 / pw,
            ((targets[:, 1] + targets[:, 3]) - (boxes[:, 1] + boxes[:, 3])) * 0.5 / ph,
            torch.log(gw / pw),
            torch.log(gh / ph),
        ],
        dim=1,
    )
    return deltas / deltas.new_tensor(stds)


def match(anchors: torch.Tensor, boxes: torch.Tensor, pos: float, neg: float):
    """Per anchor: index of its best ground-truth box, and 1 (IoU ≥ pos or the best anchor of a
    box), 0 (IoU < neg) or -1 (ignored)."""
    iou = box_iou(anchors, boxes)
    best, index = iou.max(dim=1)
    state = torch.full_like(best, -1)
    state[best < neg] = 0
    state[best >= pos] = 1
    state[iou.argmax(dim=0)] = 1
    index[iou.argmax(dim=0)] = torch.arange(len(boxes))
    return index, state


def fit(layers: list, loss_fn, steps: int = 100, lr: float = 0.01) -> None:
    """Adam on the parameters of ``layers`` alone, full batch, from zero weights (and the
    biases as they are)."""
    with torch.no_grad():
        for layer in layers:
            layer.weight.zero_()
    optimizer = torch.optim.Adam([p for layer in layers for p in layer.parameters()], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()


def dense_targets(samples, anchors, num_classes, pos, neg, one_hot=True):
    """Classification targets (A_total×K or A_total) with a valid mask, and box targets."""
    cls, valid, reg, positive = [], [], [], []
    for _, _, boxes, labels, _ in samples:
        index, state = match(anchors, boxes, pos, neg)
        target = torch.zeros(len(anchors), num_classes) if one_hot else torch.zeros(len(anchors))
        if one_hot:
            target[state == 1, labels[index[state == 1]]] = 1
        else:
            target[state == 1] = 1
        cls.append(target)
        valid.append(state >= 0)
        reg.append(encode(anchors, boxes[index], [1.0] * 4))
        positive.append(state == 1)
    return torch.stack(cls), torch.stack(valid), torch.stack(reg), torch.stack(positive)


def position_rows(feats: list, kernel: int) -> torch.Tensor:
    """Per-level B×C×h×w → B×(Σ h·w)×(C·kernel²): each location's input to a kernel×kernel
    conv (padding kernel // 2), so that the conv is a matrix product with its flattened
    weight."""
    return torch.cat(
        [F.unfold(f, kernel, padding=kernel // 2).transpose(1, 2) for f in feats], dim=1
    )


def apply_rows(conv: nn.Conv2d, rows: torch.Tensor, channels: int) -> torch.Tensor:
    """``conv`` at the locations of ``rows`` (N×C·k²) → (N·A)×channels, per location its A
    anchors."""
    out = rows @ conv.weight.flatten(1).T + conv.bias
    return out.reshape(-1, channels)


def sample_locations(positive: torch.Tensor, num_anchors: int):
    """The locations (B×Σ h·w) with a positive anchor and a random fifth of the others, and
    their anchors (B×Σ h·w·A), from the B×(Σ h·w·A) positive anchors."""
    per_location = positive.view(len(positive), -1, num_anchors).any(dim=2)
    generator = torch.Generator().manual_seed(0)
    keep = per_location | (torch.rand(per_location.shape, generator=generator) < 0.2)
    return keep, keep[..., None].expand(-1, -1, num_anchors).reshape(len(positive), -1)


def fit_retinanet(official: OfficialRetinaNet, samples) -> None:
    """Fits ``retina_cls`` (focal loss) and ``retina_reg`` (L1) on the frozen head features of
    the locations with a positive anchor and a random fifth of the others."""
    head, num_classes = official.bbox_head, official.bbox_head.num_classes
    num_anchors = head.retina_reg.out_channels // 4
    images = torch.cat([s[0] for s in samples])
    with torch.no_grad():
        cls_feats, reg_feats = [], []
        for x in official.extract_feat(images):
            c, r = x, x
            for conv in head.cls_convs:
                c = conv(c)
            for conv in head.reg_convs:
                r = conv(r)
            cls_feats.append(c)
            reg_feats.append(r)
    sizes = [tuple(f.shape[-2:]) for f in cls_feats]
    anchors = torch.cat(grid_anchors(sizes, official.strides, official.anchor_scales))
    cls_t, valid, reg_t, positive = dense_targets(samples, anchors, num_classes, 0.5, 0.4)
    keep, anchor_keep = sample_locations(positive, num_anchors)
    cls_rows, reg_rows = position_rows(cls_feats, 3)[keep], position_rows(reg_feats, 3)[keep]
    cls_t, valid, reg_t, positive = (t[anchor_keep] for t in (cls_t, valid, reg_t, positive))
    num_pos = positive.sum().clamp(min=1)
    with torch.no_grad():  # mmdet's start: zero deltas, class probability 0.01 everywhere
        head.retina_reg.bias.zero_()
        head.retina_cls.bias.fill_(-np.log(99))

    def loss():
        logits = apply_rows(head.retina_cls, cls_rows, num_classes)
        deltas = apply_rows(head.retina_reg, reg_rows, 4)
        focal = sigmoid_focal_loss(logits[valid], cls_t[valid], reduction="sum")
        return (focal + (deltas[positive] - reg_t[positive]).abs().sum()) / num_pos

    fit([head.retina_cls, head.retina_reg], loss)


def fit_mask_rcnn(official: OfficialMaskRCNN, samples) -> None:
    rpn, bbox_head = official.rpn_head, official.roi_head.bbox_head
    mask_head, num_classes = official.roi_head.mask_head, bbox_head.fc_cls.out_features - 1
    images = torch.cat([s[0] for s in samples])
    with torch.no_grad():
        feats = official.extract_feat(images)
        rpn_feats = [F.relu(rpn.rpn_conv(x)) for x in feats]
    sizes = [tuple(f.shape[-2:]) for f in rpn_feats]
    anchors = torch.cat(grid_anchors(sizes, official.strides, [official.rpn_scale]))
    obj_t, valid, reg_t, positive = dense_targets(samples, anchors, 1, 0.7, 0.3, one_hot=False)
    keep, anchor_keep = sample_locations(positive, rpn.rpn_cls.out_channels)
    rows = position_rows(rpn_feats, 1)[keep]
    obj_t, valid, reg_t, positive = (t[anchor_keep] for t in (obj_t, valid, reg_t, positive))

    def rpn_loss():
        logits = apply_rows(rpn.rpn_cls, rows, 1)[:, 0]
        deltas = apply_rows(rpn.rpn_reg, rows, 4)
        bce = F.binary_cross_entropy_with_logits(logits[valid], obj_t[valid])
        return bce + (deltas[positive] - reg_t[positive]).abs().mean()

    fit([rpn.rpn_cls, rpn.rpn_reg], rpn_loss, steps=300)
    strides = official.strides[:4]
    box_feats, box_labels, box_deltas, mask_feats, mask_labels, mask_targets = (
        [] for _ in range(6)
    )
    with torch.no_grad():
        for i, (_, meta, boxes, labels, masks) in enumerate(samples):
            level_feats = [f[i : i + 1] for f in feats[:4]]
            rois = torch.cat(
                [official.proposals([f[i : i + 1] for f in feats], meta)[:64, :4], boxes]
            )
            index, state = match(rois, boxes, 0.5, 0.5)
            x = roi_extract(level_feats, rois, 7, strides).flatten(1)
            for fc in bbox_head.shared_fcs:
                x = F.relu(fc(x))
            box_feats.append(x)
            box_labels.append(torch.where(state == 1, labels[index], num_classes))
            box_deltas.append(encode(rois, boxes[index], [0.1, 0.1, 0.2, 0.2]))
            x = roi_extract(level_feats, boxes, 14, strides)
            for conv in mask_head.convs:
                x = conv(x)
            mask_feats.append(F.relu(mask_head.upsample(x)))
            mask_labels.append(labels)
            mask_rois = torch.cat([torch.arange(len(boxes))[:, None].float(), boxes], dim=1)
            mask_targets.append(roi_align(masks[:, None], mask_rois, 28, 1.0, 0, True)[:, 0] >= 0.5)
    box_feats, box_labels, box_deltas = (
        torch.cat(box_feats),
        torch.cat(box_labels),
        torch.cat(box_deltas),
    )
    mask_labels = torch.cat(mask_labels)
    mask_rows = torch.cat(mask_feats).permute(0, 2, 3, 1).flatten(0, 2)  # (N·28·28)×C
    mask_targets = torch.cat(mask_targets).float()
    fg = box_labels < num_classes

    def box_loss():
        deltas = bbox_head.fc_reg(box_feats).view(len(box_feats), -1, 4)[fg, box_labels[fg]]
        ce = F.cross_entropy(bbox_head.fc_cls(box_feats), box_labels)
        return ce + (deltas - box_deltas[fg]).abs().mean()

    def mask_loss():
        logits = apply_rows(mask_head.conv_logits, mask_rows, num_classes).view(
            len(mask_labels), 28, 28, num_classes
        )[torch.arange(len(mask_labels)), ..., mask_labels]
        return F.binary_cross_entropy_with_logits(logits, mask_targets)

    fit([bbox_head.fc_cls, bbox_head.fc_reg], box_loss)
    fit([mask_head.conv_logits], mask_loss)


def coco_results(instances: Instances, image_id: int) -> list:
    """Detections → COCO result dicts (category ids 1..3, boxes xywh, RLE masks)."""
    results = []
    for i, (x1, y1, x2, y2) in enumerate(instances.pred_boxes.tensor.tolist()):
        result = {
            "image_id": image_id,
            "category_id": int(instances.pred_classes[i]) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(instances.scores[i]),
        }
        if instances.has("pred_masks"):
            mask = np.asfortranarray(instances.pred_masks[i].numpy().astype(np.uint8))
            result["segmentation"] = mask_util.encode(mask)
            result["segmentation"]["counts"] = result["segmentation"]["counts"].decode()
        results.append(result)
    return results


def coco_ap(ours, official, dicts, coco_file: str, iou_types, scale) -> dict:
    """{iou type: (our AP, the official evaluation's AP)} on ``dicts``."""
    gt = COCO(coco_file)
    results = {"ours": [], "official": []}
    for d in dicts:
        results["ours"] += coco_results(our_detections(ours, [d], scale)[0], d["image_id"])
        results["official"] += coco_results(
            official_detections(official, [d], scale)[0], d["image_id"]
        )
    aps = {}
    for iou_type in iou_types:
        for side in ("ours", "official"):
            evaluation = COCOeval(gt, gt.loadRes(results[side]), iou_type)
            with contextlib.redirect_stdout(io.StringIO()):
                evaluation.evaluate()
                evaluation.accumulate()
                evaluation.summarize()
            aps.setdefault(iou_type, []).append(100 * evaluation.stats[0])
    return {k: tuple(v) for k, v in aps.items()}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    train = training_samples(*draw_shapes(folder, 32, SHAPES_TRAIN_SIZE, seed=1))
    return train, draw_shapes(folder, 12, SHAPES_VAL_SIZE, seed=2)


@pytest.mark.parametrize(
    "build, fit_official, config, iou_types",
    [
        (official_retinanet, fit_retinanet, "retinanet_denseclip_tiny.py", ["bbox"]),
        (official_mask_rcnn, fit_mask_rcnn, "mask_rcnn_denseclip_tiny.py", ["bbox", "segm"]),
    ],
    ids=["retinanet", "mask_rcnn"],
)
def test_coco_ap_is_the_official_evaluations(
    build, fit_official, config, iou_types, shapes, tmp_path
):
    """The fitted model's COCO AP on held-out images, ours vs the official evaluation. The RPN
    keeps the tiny config's test numbers (300 per level before NMS, 100 after) on both sides:
    the box head's cost grows with the proposals."""
    train, (val_dicts, val_file) = shapes
    official = randomize_(build(True), seed=0).eval()
    if isinstance(official, OfficialMaskRCNN):
        official.test_cfg = dict(
            MASK_RCNN_TEST_CFG, rpn=dict(MASK_RCNN_TEST_CFG["rpn"], nms_pre=300, max_per_img=100)
        )
    fit_official(official, train)
    ours = convert_to_ours(config, official, tmp_path)
    aps = coco_ap(ours, official, val_dicts, val_file, iou_types, TEST_SCALE)
    print(config, aps)  # measured: see DOCS_h10det.md
    for ap_ours, ap_official in aps.values():
        assert ap_official > 5  # the fitted model detects (random weights: AP 0.01)
        assert abs(ap_ours - ap_official) <= 0.1


def to_official(our_state: dict, official: torch.nn.Module) -> dict:
    """Our state dict → the official one of ``official``'s architecture (the conversion
    inverted: names, and RetinaNet's anchor blocks back to mmdet's order)."""
    conversion = convert_official_state_dict(official.state_dict())
    state = {}
    for key, ours in conversion.names.items():
        value = our_state[ours]
        if key in conversion.transformed:  # PermuteAnchors: ours = blocks[order]
            order = RETINANET_ANCHORS.official_order()
            blocks = value.reshape(len(order), -1, *value.shape[1:])
            inverse = torch.empty_like(blocks)
            inverse[order] = blocks
            value = inverse.reshape(value.shape)
        state[key] = value
    return state


def test_coco_ap_of_a_trained_retinanet_is_the_official_evaluations(tmp_path):
    """Opt-in (minutes of training): $DENSECLIP_TRAINED_RETINANET names a checkpoint of ours
    from ``python train_net.py --config-file configs/Synthetic/retinanet_denseclip_tiny.py
    model.backbone.bottom_up.image_encoder.heads=32`` (the official code's 32 attention-pool
    heads), written back in the official format for the reference side; evaluated both ways on
    synthetic_det_val (64 images of 128×128, kept at their size)."""
    path = os.environ.get("DENSECLIP_TRAINED_RETINANET")
    if not path:
        pytest.skip("set $DENSECLIP_TRAINED_RETINANET to a trained retinanet_denseclip_tiny")
    official = official_retinanet(True).eval()
    our_state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    official.load_state_dict(to_official(our_state, official), strict=True)
    ours = convert_to_ours("retinanet_denseclip_tiny.py", official, tmp_path)
    dicts = DatasetCatalog.get("synthetic_det_val")
    coco_file = coco_instances_path(synthetic_detection_root(), "val")
    ((ap_ours, ap_official),) = coco_ap(
        ours, official, dicts, coco_file, ["bbox"], (128, 128)
    ).values()
    print(
        f"trained retinanet_denseclip_tiny box AP: ours {ap_ours:.2f}, official {ap_official:.2f}"
    )
    assert ap_official > 20
    assert abs(ap_ours - ap_official) <= 0.1
