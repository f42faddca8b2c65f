"""Official DenseCLIP detection checkpoints give the official evaluation's detections end to end:
from an image file on disk to the final boxes, scores, labels and masks, our converted model
(detectron2 data mapper with the COCO configs' mmcv resize, the model with mmdet's inference
switches, detector post-processing) agrees with an independent restatement of mmdet 2.17's test
path (tests/mmdet_reference.py) on the same official-format checkpoint.

The models have the tiny synthetic configs' widths, so that the test is fast; the official
checkpoint is the reference model's own state dict (official names by construction), written
to disk in the mmcv format and converted by ``denseclip.checkpoint.official``.
"""

import contextlib
import io
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from conftest import REPO_ROOT
from mmdet_reference import (
    RETINANET_TEST_CFG,
    FCNMaskHead,
    MMDetFPN,
    OfficialMaskRCNN,
    OfficialRetinaNet,
    RetinaHead,
    RoIHead,
    RPNHead,
    Shared2FCBBoxHead,
    load_test_image,
)
from official_reference import CLIPResNet, CLIPTextContextEncoder, ContextDecoder, randomize_
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import Boxes, Instances

from denseclip.checkpoint.official import (
    RETINANET_ANCHORS,
    convert_official_state_dict,
    load_official_checkpoint,
)
from denseclip.data import SYNTHETIC_DET_CLASSES, KeepRatioResize
from denseclip.data.folder import coco_instances_path
from denseclip.data.synthetic import synthetic_detection_root
from denseclip.meta_arch import SymmetricClampBox2BoxTransform, rescale_detections

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


def convert_to_ours(config: str, official: torch.nn.Module, folder):
    """``official``'s state dict as an mmcv checkpoint file → our model of ``config`` (eval), with
    the official code's 32 attention-pool heads (the tiny configs take CLIP's width·32/64)."""
    path = str(folder / "official.pth")
    torch.save({"meta": {}, "state_dict": official.state_dict()}, path)
    state_dict, _ = load_official_checkpoint(path)
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/Synthetic", config))
    cfg.model.backbone.bottom_up.image_encoder.heads = 32
    model = instantiate(cfg.model).eval()
    model.load_state_dict(convert_official_state_dict(state_dict).state_dict, strict=True)
    return model


def our_detections(model, dataset_dicts, scale=TEST_SCALE) -> list:
    """Our evaluation path: the mapper with the COCO configs' (mmcv) resize, the model."""
    mapper = DatasetMapper(
        is_train=False, augmentations=[KeepRatioResize(scale)], image_format="RGB"
    )
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


@pytest.fixture(scope="module", params=[True, False], ids=["denseclip", "clip"])
def mask_rcnn_pair(request, tmp_path_factory):
    """(ours, official) Mask R-CNN from one random official checkpoint, with the official RPN
    test numbers (1000 per level before NMS, 1000 after; the tiny configs use fewer)."""
    with_text = request.param
    official = randomize_(official_mask_rcnn(with_text), seed=0).eval()
    with torch.no_grad():  # a spread of class scores, as for a trained model
        official.roi_head.bbox_head.fc_cls.weight.mul_(4)
    config = "mask_rcnn_denseclip_tiny.py" if with_text else "mask_rcnn_clip_tiny.py"
    ours = convert_to_ours(config, official, tmp_path_factory.mktemp("mask_rcnn"))
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
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/Synthetic/retinanet_clip_tiny.py"))
    cfg.model.update(candidate_selection="detectron2", clip_boxes_before_nms=False)
    return instantiate(cfg.model).eval()


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


OFFICIAL_COCO_CONFIGS = sorted(os.listdir(os.path.join(REPO_ROOT, "configs/COCO")))


@pytest.mark.parametrize("config", OFFICIAL_COCO_CONFIGS)
def test_official_coco_configs_default_to_the_official_inference(config):
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
# Random weights detect nothing (AP ≈ 0), so the AP comparison needs a trained model, which takes
# minutes: it runs on a checkpoint named by $DENSECLIP_TRAINED_RETINANET /
# $DENSECLIP_TRAINED_MASK_RCNN (our format, trained with the official 32 attention-pool heads):
#   python train_net.py --config-file configs/Synthetic/retinanet_denseclip_tiny.py \
#       model.backbone.bottom_up.image_encoder.heads=32 train.output_dir=OUT
# (mask_rcnn_denseclip_tiny.py likewise), then DENSECLIP_TRAINED_RETINANET=OUT/model_final.pth.
# Our weights are written back in the official format for the reference side.


def to_official(our_state: dict, official: torch.nn.Module) -> dict:
    """Our state dict → the official one of ``official``'s architecture (conversion inverted:
    names, and anchor blocks back to mmdet's order)."""
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


def coco_results(instances: Instances, image_id: int) -> list:
    """Detections → COCO result dicts (category ids 1..3, boxes xywh, RLE masks)."""
    results = []
    boxes = instances.pred_boxes.tensor.tolist()
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        result = {
            "image_id": image_id,
            "category_id": int(instances.pred_classes[i]) + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(instances.scores[i]),
        }
        if instances.has("pred_masks"):
            mask = np.asfortranarray(instances.pred_masks[i].numpy().astype(np.uint8))
            rle = mask_util.encode(mask)
            rle["counts"] = rle["counts"].decode()
            result["segmentation"] = rle
        results.append(result)
    return results


def coco_ap(gt: COCO, results: list, iou_type: str) -> float:
    evaluation = COCOeval(gt, gt.loadRes(results), iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return 100 * evaluation.stats[0]


@pytest.mark.parametrize(
    "variable, config, build, tasks",
    [
        ("DENSECLIP_TRAINED_RETINANET", "retinanet_denseclip_tiny.py", official_retinanet, ["bbox"]),
        (
            "DENSECLIP_TRAINED_MASK_RCNN",
            "mask_rcnn_denseclip_tiny.py",
            official_mask_rcnn,
            ["bbox", "segm"],
        ),
    ],
)
def test_coco_ap_of_a_trained_model_is_the_official_evaluations(
    variable, config, build, tasks, tmp_path
):
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"set ${variable} to a trained {config} checkpoint (see the comment above)")
    import denseclip.data  # noqa: F401  (registers synthetic_det_val)

    official = build(True).eval()
    our_state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    official.load_state_dict(to_official(our_state, official), strict=True)
    ours = convert_to_ours(config, official, tmp_path)
    if isinstance(official, OfficialMaskRCNN):
        ours.proposal_generator.pre_nms_topk[False] = 1000
        ours.proposal_generator.post_nms_topk[False] = 1000
    dicts = DatasetCatalog.get("synthetic_det_val")
    gt = COCO(coco_instances_path(synthetic_detection_root(), "val"))
    ours_results, official_results = [], []
    for d in dicts:  # 128×128 images: the COCO resize at (128, 128) keeps them as they are
        (mine,) = our_detections(ours, [d], scale=(128, 128))
        (theirs,) = official_detections(official, [d], scale=(128, 128))
        ours_results += coco_results(mine, d["image_id"])
        official_results += coco_results(theirs, d["image_id"])
    for task in tasks:
        ap_ours, ap_official = coco_ap(gt, ours_results, task), coco_ap(gt, official_results, task)
        print(f"{config} {task} AP: ours {ap_ours:.2f}, official {ap_official:.2f}")
        assert ap_official > 10  # the model detects
        assert abs(ap_ours - ap_official) <= 0.1
