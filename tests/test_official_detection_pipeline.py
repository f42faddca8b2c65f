"""Official DenseCLIP detection checkpoints give the official evaluation's detections end to end:
from an image file on disk to the final boxes, scores, labels and masks, our converted model
(detectron2 data mapper with the COCO configs' mmcv resize, the model with mmdet's inference
switches, detector post-processing) agrees with an independent restatement of mmdet 2.17's test
path (tests/mmdet_reference.py) on the same official-format checkpoint.

The models have the tiny synthetic configs' widths, so that the test is fast; the official
checkpoint is the reference model's own state dict (official names by construction), written
to disk in the mmcv format and converted by ``denseclip.checkpoint.official``.
"""

import os

import cv2
import numpy as np
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
from torchvision.ops import box_iou

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetMapper
from detectron2.structures import Boxes, Instances

from denseclip.checkpoint.official import convert_official_state_dict, load_official_checkpoint
from denseclip.data import SYNTHETIC_DET_CLASSES, KeepRatioResize
from denseclip.meta_arch import MMDetStyleRetinaNet

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


def our_detections(model, dataset_dicts) -> list:
    """Our evaluation path: the mapper with the COCO configs' (mmcv) resize, the model."""
    mapper = DatasetMapper(
        is_train=False, augmentations=[KeepRatioResize(TEST_SCALE)], image_format="RGB"
    )
    with torch.no_grad():
        return [model([mapper(dict(d))])[0]["instances"] for d in dataset_dicts]


def official_detections(official, dataset_dicts) -> list:
    """The official evaluation path, as Instances at the original size."""
    results = []
    for d in dataset_dicts:
        outputs = official.simple_test(*load_test_image(d["file_name"], TEST_SCALE))
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
