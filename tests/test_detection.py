"""Specification of DenseCLIP detection: the auxiliary box-supervised pixel-text loss, the
RetinaNet and Mask R-CNN meta-architectures, the FPN top block, the gradient-clipping optimizer,
the COCO configs (sizes, recipe) and the tiny synthetic configs (training, evaluation)."""

import gc
import math
import os

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from helpers import (
    assert_same_results,
    eval_results,
    evaluate_in_process,
    load_python_file,
    run_train_net,
    tiny_overrides,
)

from denseclip.config import set_class_names
from denseclip.data import COCO_CLASSES, SYNTHETIC_DET_CLASSES, KeepRatioResize
from denseclip.pyramids import LastLevelP6P7NoReLU, with_score_channels
from denseclip.losses import box_seg_aux_loss, box_seg_targets
from denseclip.meta_arch import DenseCLIPGeneralizedRCNN, DenseCLIPRetinaNet
from denseclip.solver import AdamWWithGradClip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_RETINANET = "configs/Synthetic/retinanet_denseclip_tiny.py"
TINY_MASK_RCNN = "configs/Synthetic/mask_rcnn_denseclip_tiny.py"
COCO_RETINANET = "configs/COCO/retinanet_denseclip_r50_fpn_1x_coco.py"
COCO_MASK_RCNN = "configs/COCO/mask_rcnn_denseclip_r50_fpn_1x_coco.py"
TEXT_ENCODER_PREFIX = "backbone.bottom_up.prompts.text_encoder."
EPOCH = 7330  # COCO iterations per epoch at batch 16


def _load(path):
    return LazyConfig.load(os.path.join(REPO_ROOT, path))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: the test machine's 2 cores are shared, and two spinning threads per
    process make the tiny models several times slower there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------- targets


def _targets(boxes, classes, num_classes=2, size=(8, 8)):
    """Targets of one image: (K×h×w target, h×w mask)."""
    target, mask = box_seg_targets(
        [torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)],
        [torch.tensor(classes, dtype=torch.int64)],
        num_classes,
        size,
    )
    return target[0], mask[0, 0]


def test_targets_truncate_box_coordinates_divided_by_4():
    # (5, 9, 18, 15) / 4 = (1.25, 2.25, 4.5, 3.75) -> (1, 2, 4, 3): row 2, columns 1..3
    target, _ = _targets([[5, 9, 18, 15]], [1])
    expected = torch.zeros(2, 8, 8)
    expected[1, 2, 1:4] = 1
    assert torch.equal(target, expected)


def test_targets_clamp_to_the_last_cell_which_stays_uncovered():
    # (20, 24, 40, 40) / 4 = (5, 6, 10, 10); x2, y2 clamped to 7 and excluded: cells (6, 5..6)
    target, _ = _targets([[20, 24, 40, 40]], [0])
    expected = torch.zeros(2, 8, 8)
    expected[0, 6, 5:7] = 1
    assert torch.equal(target, expected)


def test_targets_put_each_box_in_its_class_channel_without_double_counting():
    target, _ = _targets([[0, 0, 8, 8], [4, 4, 12, 12], [16, 0, 20, 4]], [0, 0, 1])
    expected = torch.zeros(2, 8, 8)
    expected[0, 0:2, 0:2] = 1
    expected[0, 1:3, 1:3] = 1
    expected[1, 0:1, 4:5] = 1
    assert torch.equal(target, expected)


def test_mask_is_the_union_of_all_boxes_whatever_their_class():
    target, mask = _targets([[0, 0, 8, 8], [16, 0, 20, 4]], [0, 1])
    assert torch.equal(mask, target.amax(dim=0))
    assert mask.sum() == 4 + 1


def test_image_without_boxes_has_empty_targets():
    target, mask = _targets([], [])
    assert not target.any() and not mask.any()


def _official_targets(boxes, classes, num_classes, size):
    """The official ``build_seg_target`` loop, written out independently (slices per box)."""
    height, width = size
    target = torch.zeros(len(boxes), num_classes, height, width)
    mask = torch.zeros(len(boxes), 1, height, width)
    for i, (image_boxes, labels) in enumerate(zip(boxes, classes)):
        cells = (image_boxes / 4).long()
        cells[:, 0::2] = cells[:, 0::2].clamp(0, width - 1)
        cells[:, 1::2] = cells[:, 1::2].clamp(0, height - 1)
        for (x1, y1, x2, y2), label in zip(cells.tolist(), labels.tolist()):
            target[i, label, y1:y2, x1:x2] = 1
            mask[i, :, y1:y2, x1:x2] = 1
    return target, mask


def test_targets_match_the_official_loop_on_random_boxes():
    generator = torch.Generator().manual_seed(0)
    boxes, classes = [], []
    for count in (5, 0, 9):
        xy = torch.rand(count, 2, generator=generator) * 60
        wh = torch.rand(count, 2, generator=generator) * 40
        boxes.append(torch.cat([xy, xy + wh], dim=1))  # some beyond the 64x48 padded batch
        classes.append(torch.randint(0, 3, (count,), generator=generator))
    ours = box_seg_targets(boxes, classes, 3, (12, 16))
    official = _official_targets(boxes, classes, 3, (12, 16))
    assert torch.equal(ours[0], official[0]) and torch.equal(ours[1], official[1])


# ---------------------------------------------------------------------------------- loss


def _constant_logits(values, batch=1, size=(1, 1)):
    """B×K×h×w logits equal to ``values[k]`` everywhere (bilinear resizing keeps them)."""
    return torch.tensor(values).reshape(1, -1, 1, 1).expand(batch, -1, *size).clone()


def test_loss_averages_bce_over_covered_pixels_and_all_classes():
    # 16x16 batch -> 4x4 grid; box (0, 0, 8, 4) covers cells (0, 0) and (0, 1), class 0.
    # class 0: logit 0 -> BCE = ln 2 (any target); class 1: logit ln 3 -> p = 0.75, target 0
    # -> BCE = ln 4. Sum over 2 pixels x 2 classes = 2 ln 2 + 2 ln 4, divided by 2 x 2 = 4.
    logits = _constant_logits([0.0, math.log(3)], size=(2, 2))
    loss = box_seg_aux_loss(logits, [torch.tensor([[0.0, 0, 8, 4]])], [torch.tensor([0])], (16, 16))
    assert loss.item() == pytest.approx(1.5 * math.log(2), rel=1e-6)


def test_loss_ignores_pixels_outside_the_boxes():
    logits = torch.zeros(1, 2, 4, 4)
    logits[..., 1:, :] = 50.0  # outside the box: confidently wrong, but masked out
    logits[..., 0, 0] = 50.0  # inside the box, class 0 and 1 at p = 1
    loss = box_seg_aux_loss(logits, [torch.tensor([[0.0, 0, 4, 4]])], [torch.tensor([0])], (16, 16))
    # one covered cell: class 0 target 1 (BCE 0), class 1 target 0 (BCE 50)
    assert loss.item() == pytest.approx(50.0 / 2, rel=1e-6)


def test_loss_is_one_mean_over_the_batch_not_a_mean_of_image_means():
    # image 0: 1 covered cell with BCE ln 2 per class; image 1: 3 cells with BCE ln 4 for
    # class 1 (logit ln 3, target 0) and ln 2 for class 0 (logit 0).
    logits = torch.cat([_constant_logits([0.0, 0.0]), _constant_logits([0.0, math.log(3)])])
    boxes = [torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([[0.0, 0, 12, 4]])]
    loss = box_seg_aux_loss(logits, boxes, [torch.tensor([0]), torch.tensor([0])], (16, 16))
    expected = (1 * 2 * math.log(2) + 3 * (math.log(2) + math.log(4))) / (4 * 2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_loss_upsamples_the_score_map_bilinearly_to_stride_4():
    logits = torch.randn(1, 3, 2, 3)
    boxes, classes = [torch.tensor([[3.0, 5, 40, 60], [20, 2, 30, 9]])], [torch.tensor([2, 0])]
    loss = box_seg_aux_loss(logits, boxes, classes, (64, 96))
    upsampled = F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False)
    target, mask = box_seg_targets(boxes, classes, 3, (16, 24))
    mask = mask.expand_as(target)
    expected = F.binary_cross_entropy(
        torch.sigmoid(upsampled), target, weight=mask, reduction="sum"
    )
    assert loss.item() == pytest.approx((expected / mask.sum()).item(), rel=1e-5)


def test_loss_without_any_box_is_zero_and_differentiable():
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    empty = [torch.zeros(0, 4), torch.zeros(0, 4)]
    loss = box_seg_aux_loss(logits, empty, [torch.zeros(0, dtype=torch.int64)] * 2, (64, 64))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


# ---------------------------------------------------------------------------------- FPN block


def test_p7_is_computed_from_p6_without_relu():
    torch.manual_seed(0)
    block = LastLevelP6P7NoReLU(in_channels=6, out_channels=4)
    c5 = torch.randn(1, 6, 8, 8)
    p6, p7 = block(c5)
    assert (p6 < 0).any()  # a ReLU would change P7
    assert torch.allclose(p6, block.p6(c5))
    assert torch.allclose(p7, F.conv2d(p6, block.p7.weight, block.p7.bias, stride=2, padding=1))
    stock = LastLevelP6P7(6, 4)
    stock.load_state_dict(block.state_dict())
    assert not torch.allclose(stock(c5)[1], p7)


def test_with_score_channels_adds_one_channel_per_class():
    assert with_score_channels(2048, COCO_CLASSES) == 2048 + 80


# ---------------------------------------------------------------------------------- optimizer


def test_gradient_clipping_scales_all_gradients_by_one_global_norm():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    optimizer = AdamWWithGradClip([a, b], lr=1e-3, max_norm=0.1, norm_type=2.0)
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0])  # global norm 5
    optimizer.step()
    # one factor 0.1 / 5 for both (detectron2's per-parameter clipping would give 0.1 each)
    assert torch.allclose(a.grad, torch.tensor([0.06, 0.0]))
    assert torch.allclose(b.grad, torch.tensor([0.0, 0.08]))


def test_gradient_clipping_leaves_small_gradients_alone():
    a = torch.nn.Parameter(torch.zeros(2))
    optimizer = AdamWWithGradClip([a], lr=1e-3, max_norm=0.1)
    a.grad = torch.tensor([0.03, 0.04])
    optimizer.step()
    assert torch.allclose(a.grad, torch.tensor([0.03, 0.04]))


# ---------------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def tiny_configs():
    return {path: _load(path) for path in (TINY_RETINANET, TINY_MASK_RCNN)}


def _tiny_model(tiny_configs, path, **changes):
    cfg = tiny_configs[path].copy()
    model_cfg = cfg.model.copy()
    model_cfg.update(changes)
    torch.manual_seed(0)
    return instantiate(model_cfg)


@pytest.fixture(scope="module")
def fixed_batch(tiny_configs):
    """The first two synthetic training images with boxes and masks, without augmentation."""
    mapper_cfg = tiny_configs[TINY_MASK_RCNN].dataloader.train.mapper.copy()
    mapper_cfg.augmentations = []
    mapper = instantiate(mapper_cfg)
    return [mapper(d) for d in DatasetCatalog.get("synthetic_det_train")[:2]]


def _losses(model, batch):
    """Training losses of ``batch``, with the same dropout masks and (RetinaNet) the same loss
    normalizer at every call: detectron2's RetinaNet divides by an EMA of the number of positive
    anchors, which would otherwise change between calls."""
    model.__dict__.pop("loss_normalizer", None)
    torch.manual_seed(1)
    with EventStorage():
        return model(batch)


@pytest.mark.parametrize("path", [TINY_RETINANET, TINY_MASK_RCNN])
def test_tiny_detector_reduces_its_loss_on_a_fixed_batch(tiny_configs, fixed_batch, path):
    cfg = tiny_configs[path]
    model = _tiny_model(tiny_configs, path).train()
    optimizer_cfg = cfg.optimizer.copy()
    optimizer_cfg.params.model = model
    optimizer = instantiate(optimizer_cfg)
    assert isinstance(optimizer, AdamWWithGradClip) and optimizer.max_norm == 0.1
    before = _losses(model, fixed_batch)
    assert "loss_aux_box_seg" in before
    # from scratch and without warm-up the first steps shake the τ-scaled score maps (the aux
    # loss rises), then every loss goes down
    for _ in range(8):
        optimizer.zero_grad()
        sum(_losses(model, fixed_batch).values()).backward()
        optimizer.step()
    after = _losses(model, fixed_batch)
    total = {
        name: sum(v.item() for v in losses.values())
        for name, losses in (("before", before), ("after", after))
    }
    assert total["after"] < total["before"], (before, after)


@pytest.mark.parametrize("mode", ["pre", "none"])
@pytest.mark.parametrize("path", [TINY_RETINANET, TINY_MASK_RCNN])
def test_detectors_take_every_prompting_mode(tiny_configs, fixed_batch, path, mode):
    """The Table 2 switch (configs/common/models/prompting.py) on the detectors: the aux loss
    reaches the prompting decoder, and inference runs."""
    prompting = load_python_file("configs/common/models/prompting.py")
    cfg = tiny_configs[path].copy()
    sizes = {"width": 32, "num_layers": 1} if mode == "pre" else {}
    prompting.set_prompting(cfg.model.backbone.bottom_up, mode, **sizes)
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    bottom_up = model.backbone.bottom_up
    assert bottom_up.prompting == mode
    _losses(model, fixed_batch)["loss_aux_box_seg"].backward()
    trained = bottom_up.pre_model_prompting if mode == "pre" else bottom_up.prompts
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained.parameters())
    with torch.no_grad():
        outputs = model.eval()([{"image": fixed_batch[0]["image"]}])
    assert isinstance(outputs[0]["instances"], Instances)


@pytest.mark.parametrize("path", [TINY_RETINANET, TINY_MASK_RCNN])
def test_image_without_boxes_gives_finite_losses(tiny_configs, fixed_batch, path):
    model = _tiny_model(tiny_configs, path).train()
    empty = dict(fixed_batch[0], instances=Instances(fixed_batch[0]["instances"].image_size))
    empty["instances"].gt_boxes = Boxes(torch.zeros(0, 4))
    empty["instances"].gt_classes = torch.zeros(0, dtype=torch.int64)
    if path == TINY_MASK_RCNN:
        empty["instances"].gt_masks = fixed_batch[0]["instances"].gt_masks[[]]
    for batch in ([empty], [empty, fixed_batch[1]]):
        losses = _losses(model, batch)
        assert all(torch.isfinite(v) for v in losses.values()), losses
    assert _losses(model, [empty])["loss_aux_box_seg"].item() == 0.0


def test_aux_loss_weight_scales_the_aux_loss_and_zero_removes_it(tiny_configs, fixed_batch):
    losses = {
        weight: _losses(
            _tiny_model(tiny_configs, TINY_RETINANET, aux_loss_weight=weight).train(),
            fixed_batch,
        )
        for weight in (1.0, 2.5, 0.0)
    }
    aux = losses[1.0]["loss_aux_box_seg"]
    assert aux.item() > 0
    assert losses[2.5]["loss_aux_box_seg"].item() == pytest.approx(2.5 * aux.item(), rel=1e-5)
    assert "loss_aux_box_seg" not in losses[0.0]


def test_meta_architectures_are_the_stock_detectors(tiny_configs):
    from detectron2.modeling import GeneralizedRCNN, RetinaNet

    assert isinstance(_tiny_model(tiny_configs, TINY_RETINANET), RetinaNet)
    assert isinstance(_tiny_model(tiny_configs, TINY_MASK_RCNN), GeneralizedRCNN)
    assert DenseCLIPRetinaNet.forward_training is RetinaNet.forward_training


@pytest.mark.parametrize("path", [TINY_RETINANET, TINY_MASK_RCNN])
def test_dataset_classes_reach_every_class_dependent_module(tiny_configs, path):
    cfg = tiny_configs[path].copy()
    set_class_names(cfg.model, ["cat", "dog"])
    model = instantiate(cfg.model)
    assert model.backbone.bottom_up.prompts.num_classes == 2
    assert model.backbone.fpn_lateral5.in_channels == 16 * 32 + 2
    if path == TINY_RETINANET:
        assert model.num_classes == 2 and model.head.cls_score.out_channels == 9 * 2
        assert model.backbone.top_block.p6.in_channels == 16 * 32 + 2
    else:
        heads = model.roi_heads
        assert heads.num_classes == 2 and heads.box_predictor.cls_score.out_features == 2 + 1
        assert heads.mask_head.predictor.out_channels == 2


# ---------------------------------------------------------------------------------- train_net


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "path, tasks, score_threshold",
    [
        (TINY_RETINANET, ["bbox"], "model.test_score_thresh"),
        (TINY_MASK_RCNN, ["bbox", "segm"], "model.roi_heads.box_predictor.test_score_thresh"),
    ],
)
def test_train_net_trains_and_reports_coco_ap(path, tasks, score_threshold, tmp_path, datasets_dir):
    out = str(tmp_path / "out")
    # a low score threshold, so that 2 iterations from scratch already give detections
    overrides = tiny_overrides(out, max_iter=2, **{score_threshold: 0.001})
    run = run_train_net(["--config-file", path, *overrides], datasets_dir)
    assert run.returncode == 0, run.describe()
    results = eval_results(out)
    assert results is not None and sorted(results) == tasks, run.describe()
    for task in tasks:
        assert 0.0 <= results[task]["AP"] <= 100.0, results
        assert set(results[task]) >= {"AP50", "AP75", *(f"AP-{c}" for c in SYNTHETIC_DET_CLASSES)}
    # what the command line reports is detectron2's own evaluation of its final weights
    expected = evaluate_in_process(path, overrides, os.path.join(out, "model_final.pth"))
    for task in tasks:
        assert expected[task]["AP50"] > 0, expected  # the comparison is not of zeros
        assert_same_results(results[task], expected[task])


# ---------------------------------------------------------------------------------- full size

# Paper Tables 3 and 4: parameters in millions (text encoder excluded: its output is cached).
PAPER_PARAMS_M = {
    "configs/COCO/retinanet_clip_r50_fpn_1x_coco.py": 38,
    COCO_RETINANET: 60,
    "configs/COCO/retinanet_clip_r101_fpn_1x_coco.py": 57,
    "configs/COCO/retinanet_denseclip_r101_fpn_1x_coco.py": 78,
    "configs/COCO/mask_rcnn_clip_r50_fpn_1x_coco.py": 44,
    COCO_MASK_RCNN: 67,
    "configs/COCO/mask_rcnn_clip_r101_fpn_1x_coco.py": 63,
    "configs/COCO/mask_rcnn_denseclip_r101_fpn_1x_coco.py": 84,
}


@pytest.fixture(scope="module", params=list(PAPER_PARAMS_M), ids=lambda p: os.path.basename(p)[:-3])
def full_size(request):
    """(path, cfg, model) of a full-size COCO config; one model alive at a time."""
    cfg = _load(request.param)
    model = instantiate(cfg.model)
    yield request.param, cfg, model
    del cfg, model
    gc.collect()


def _is_denseclip(path):
    return "denseclip" in os.path.basename(path)


def test_full_size_parameter_count_matches_paper(full_size):
    path, _, model = full_size
    count = sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith(TEXT_ENCODER_PREFIX)
    )
    expected = PAPER_PARAMS_M[path]
    print(f"\n{path}: {count / 1e6:.2f} M parameters without the text encoder, paper {expected} M")
    assert count / 1e6 == pytest.approx(expected, rel=0.03)


def test_full_size_c5_has_2048_channels_plus_80_score_maps_for_denseclip(full_size):
    path, _, model = full_size
    channels = 2048 + (80 if _is_denseclip(path) else 0)
    assert model.backbone.fpn_lateral5.in_channels == channels
    if "retinanet" in path:
        assert isinstance(model.backbone.top_block, LastLevelP6P7NoReLU)
        assert model.backbone.top_block.in_feature == "res5"
        assert model.backbone.top_block.p6.in_channels == channels
    else:
        assert type(model.backbone.top_block).__name__ == "LastLevelMaxPool"


def test_full_size_denseclip_crops_a_42x42_positional_embedding(full_size):
    path, _, model = full_size
    attnpool = model.backbone.bottom_up.image_encoder.attnpool
    if not _is_denseclip(path):
        assert attnpool is None  # the CLIP baselines drop the attention pool
        return
    assert attnpool.pos_embed_resize == "crop"
    assert attnpool.positional_embedding.shape[0] == 42 * 42 + 1
    assert model.backbone.bottom_up.score_scale == pytest.approx(1 / 0.07)


def test_full_size_optimizer_follows_the_official_recipe(full_size):
    path, cfg, model = full_size
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    base_lr = 1e-4 if "retinanet" in path else 2e-4
    assert isinstance(optimizer, AdamWWithGradClip)
    assert (optimizer.max_norm, optimizer.norm_type) == (0.1, 2.0)
    group_of = {
        id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]
    }
    for name, p in model.named_parameters():
        if name.startswith(TEXT_ENCODER_PREFIX):
            assert id(p) not in group_of, name
        elif name.startswith("backbone.bottom_up.image_encoder."):
            assert group_of[id(p)] == pytest.approx((0.1 * base_lr, 1e-4)), name
        elif ".norm" in name:  # the context decoder's norm1..3 (the official 'norm' key)
            assert group_of[id(p)] == pytest.approx((base_lr, 0.0)), name
        else:
            assert group_of[id(p)] == pytest.approx((base_lr, 1e-4)), name


def test_coco_schedule_is_12_epochs_with_steps_after_8_and_11_and_500_warmup_iterations():
    cfg = _load(COCO_RETINANET)
    assert cfg.train.max_iter == 12 * EPOCH
    scheduler = instantiate(cfg.lr_multiplier)

    def factor(iteration):
        return scheduler(iteration / cfg.train.max_iter)

    assert factor(0) == pytest.approx(0.001)
    assert factor(250) == pytest.approx(0.001 + 0.999 * 250 / 500)
    assert factor(500) == pytest.approx(1.0)
    assert factor(8 * EPOCH - 1) == pytest.approx(1.0)
    assert factor(8 * EPOCH) == pytest.approx(0.1)
    assert factor(11 * EPOCH) == pytest.approx(0.01)


def test_coco_data_is_rgb_1333x800_with_flip_and_batch_16():
    cfg = _load(COCO_MASK_RCNN)
    train, test = cfg.dataloader.train, cfg.dataloader.test
    assert train.dataset.names == "coco_2017_train" and test.dataset.names == "coco_2017_val"
    assert train.total_batch_size == 16 and train.mapper.image_format == "RGB"
    resize, flip = instantiate(train.mapper.augmentations)
    (test_resize,) = instantiate(test.mapper.augmentations)
    for aug in (resize, test_resize):  # mmdet's Resize(img_scale=(1333, 800), keep_ratio=True)
        assert isinstance(aug, KeepRatioResize)
        assert tuple(aug.scale) == (1333, 800) and aug.backend == "opencv"
    assert test.mapper.image_format == "RGB"
    assert flip.horizontal and flip.prob == 0.5
    assert train.mapper.use_instance_mask
    assert not _load(COCO_RETINANET).dataloader.train.mapper.use_instance_mask
