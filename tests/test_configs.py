"""Every LazyConfig under configs/ADE20K and configs/Synthetic loads and builds its model, and the
full-size models match the paper (parameter counts, score-map channels, optimizer recipe).

Each model is built once (a module-scoped fixture parametrized indirectly, so pytest groups the
tests of one config together and frees the model before building the next one).
"""

import gc
import glob
import math
import os
import re

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate
from helpers import config_fields

pytestmark = pytest.mark.timeout(600)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _configs(folder):
    paths = sorted(glob.glob(os.path.join(REPO_ROOT, "configs", folder, "*.py")))
    return [os.path.relpath(p, REPO_ROOT) for p in paths]


ADE20K_CONFIGS = _configs("ADE20K")
SYNTHETIC_CONFIGS = _configs("Synthetic")
ALL_CONFIGS = ADE20K_CONFIGS + SYNTHETIC_CONFIGS

RN50 = "configs/ADE20K/denseclip_fpn_res50_512x512_80k.py"
RN101 = "configs/ADE20K/denseclip_fpn_res101_512x512_80k.py"
VIT_B = "configs/ADE20K/denseclip_fpn_vit-b_640x640_80k.py"
CLIP_RN50 = "configs/ADE20K/fpn_clipres50_512x512_80k.py"
SWIN_T = "configs/ADE20K/denseclip_fpn_swin-t_imagenet_512x512_80k.py"
SWIN_S = "configs/ADE20K/denseclip_fpn_swin-s_imagenet_512x512_80k.py"

TEXT_ENCODER_PREFIX = "backbone.bottom_up.prompts.text_encoder."
IMAGE_ENCODER_PREFIX = "backbone.bottom_up.image_encoder."
NUM_ADE20K_CLASSES = 150

# Paper Table 1 (Semantic FPN on ADE20K), parameters in millions, text encoder excluded.
PAPER_PARAMS_M = {RN50: 50.3, CLIP_RN50: 31.0, RN101: 67.8, VIT_B: 105.3}


def _id(path):
    return os.path.splitext(os.path.basename(path))[0]


def _load(path):
    return LazyConfig.load(os.path.join(REPO_ROOT, path))


def _is_denseclip(path):
    return "denseclip" in os.path.basename(path)


def _is_sem_seg(path):
    return not re.match(r"(retinanet|mask_rcnn)", os.path.basename(path))


@pytest.fixture(scope="module")
def built(request):
    """(path, cfg, model) of the config ``request.param``; one model alive at a time."""
    path = request.param
    cfg = _load(path)
    model = instantiate(cfg.model)
    yield path, cfg, model
    del cfg, model
    gc.collect()


def _params(paths):
    return pytest.mark.parametrize("built", paths, indirect=True, ids=[_id(p) for p in paths])


def paper_param_count(model: nn.Module) -> int:
    """Parameters as the paper counts them: the frozen text encoder left out (the tokenized
    class names are buffers, not parameters)."""
    return sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith(TEXT_ENCODER_PREFIX)
    )


# ---------------------------------------------------------------------------------- every config


def test_config_folders_are_not_empty():
    assert len(ADE20K_CONFIGS) >= 4, ADE20K_CONFIGS
    assert len(SYNTHETIC_CONFIGS) >= 2, SYNTHETIC_CONFIGS
    for expected in (RN50, RN101, VIT_B, CLIP_RN50):
        assert expected in ADE20K_CONFIGS


@_params(ALL_CONFIGS)
def test_config_loads_and_model_instantiates(built):
    path, cfg, model = built
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{path}: no top-level {key!r}"
    assert isinstance(model, nn.Module)
    names = [n for n, _ in model.named_parameters()]
    has_text = any(n.startswith(TEXT_ENCODER_PREFIX) for n in names)
    assert has_text == _is_denseclip(path), f"{path}: text encoder present = {has_text}"
    total = sum(p.numel() for p in model.parameters())
    print(
        f"\n{path}: {total / 1e6:.3f} M parameters, "
        f"{paper_param_count(model) / 1e6:.3f} M without the text encoder"
    )


STANDARD_KEYS = {"model", "dataloader", "optimizer", "lr_multiplier", "train"}


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in ALL_CONFIGS])
def test_config_has_only_the_standard_top_level_keys(path):
    assert set(_load(path).keys()) == STANDARD_KEYS


# ---------------------------------------------------------------------------------- full size


@_params(list(PAPER_PARAMS_M))
def test_full_size_parameter_count_matches_paper(built):
    path, _, model = built
    measured = paper_param_count(model) / 1e6
    expected = PAPER_PARAMS_M[path]
    print(
        f"\n{path}: {measured:.3f} M parameters (text encoder excluded), paper {expected} M, "
        f"{100 * (measured - expected) / expected:+.2f} %"
    )
    assert measured == pytest.approx(expected, rel=0.02)


@_params([RN50, RN101, VIT_B])
def test_class_tokens_are_buffers_not_parameters(built):
    _, _, model = built
    buffers = dict(model.named_buffers())
    parameters = dict(model.named_parameters())
    key = "backbone.bottom_up.prompts.class_tokens"
    assert key in buffers and key not in parameters
    assert buffers[key].shape[0] == NUM_ADE20K_CLASSES


# config → (the FPN lateral conv that receives the K score channels, its in_channels)
SCORE_LATERALS = {
    RN50: ("fpn_lateral5", 2048 + NUM_ADE20K_CLASSES),
    RN101: ("fpn_lateral5", 2048 + NUM_ADE20K_CLASSES),
    VIT_B: ("fpn_lateral4", 768 + NUM_ADE20K_CLASSES),
    CLIP_RN50: ("fpn_lateral5", 2048),  # baseline: no score map
    SWIN_T: ("fpn_lateral5", 768 + NUM_ADE20K_CLASSES),
}


@_params(list(SCORE_LATERALS))
def test_score_maps_widen_one_fpn_lateral(built):
    """The K score channels join res5 for ResNets and the stride-16 level for ViT-B/16."""
    path, _, model = built
    lateral, channels = SCORE_LATERALS[path]
    fpn = model.backbone
    assert getattr(fpn, lateral).in_channels == channels
    others = {
        name: conv.in_channels
        for name, conv in fpn.named_children()
        if name.startswith("fpn_lateral") and name != lateral
    }
    base = 768 if "vit" in path else None
    for name, in_channels in others.items():
        if base is not None:
            assert in_channels == base, others
        else:
            assert in_channels < 2048, others


# parameters of the ImageNet-1K Swin releases, classifier (LayerNorm 768 + 1000-way head) included
SWIN_RELEASE_PARAMS = {SWIN_T: 28_288_354, SWIN_S: 49_606_258}


@_params(list(SWIN_RELEASE_PARAMS))
def test_swin_configs_hold_the_released_swin_under_a_768_channel_attention_pool(built):
    """The segmentation backbone is the release without its classifier, with a LayerNorm on
    each output; drop path 0.3."""
    path, _, model = built
    encoder = model.backbone.bottom_up.image_encoder
    swin = encoder.backbone
    count = sum(p.numel() for p in swin.parameters())
    classifier = 2 * 768 + 768 * 1000 + 1000
    assert count == SWIN_RELEASE_PARAMS[path] - classifier + 2 * (96 + 192 + 384 + 768)
    assert swin.layers[3].blocks[1].drop_path.drop_prob == pytest.approx(0.3)
    pool = encoder.attnpool
    assert (pool.k_proj.in_features, pool.c_proj.out_features, pool.num_heads) == (768, 1024, 12)


@_params([RN50])
def test_rn50_denseclip_predicts_150_classes_at_64x64(built):
    _, _, model = built
    model.eval()
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        outputs = model([{"image": image, "height": 64, "width": 64}])
    assert outputs[0]["sem_seg"].shape == (NUM_ADE20K_CLASSES, 64, 64)
    assert torch.isfinite(outputs[0]["sem_seg"]).all()


def _optimizer(cfg, model):
    cfg.optimizer.params.model = model
    return instantiate(cfg.optimizer)


def _lr_and_decay_by_parameter(optimizer):
    """{id(parameter): (lr, weight_decay)}; fails if a parameter is in two groups."""
    group_of = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in group_of, "a parameter is in two groups"
            group_of[id(p)] = (group["lr"], group["weight_decay"])
    return group_of


@_params([RN50])
def test_ade20k_optimizer_param_groups_follow_the_official_recipe(built):
    """Image encoder lr x0.1, context decoder norm1..3 without decay, text encoder left out,
    everything else (contexts, gamma, decoder, FPN, head) at lr 1e-4 and decay 1e-4."""
    _, cfg, model = built
    optimizer = _optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    group_of = _lr_and_decay_by_parameter(optimizer)

    norm = re.compile(r"^backbone\.bottom_up\.context_decoder\.decoder\.\d+\.norm[123]\.")
    seen = {"image": 0, "norm": 0, "text": 0, "other": 0}
    for name, p in model.named_parameters():
        if name.startswith(TEXT_ENCODER_PREFIX):
            kind, expected = "text", None
        elif name.startswith(IMAGE_ENCODER_PREFIX):
            kind, expected = "image", (1e-5, 1e-4)
        elif norm.match(name):
            kind, expected = "norm", (1e-4, 0.0)
        else:
            kind, expected = "other", (1e-4, 1e-4)
        seen[kind] += 1
        if expected is None:
            assert id(p) not in group_of, f"text-encoder parameter {name} is optimized"
        else:
            assert id(p) in group_of, f"{name} is not optimized"
            lr, wd = group_of[id(p)]
            assert (lr, wd) == pytest.approx(expected, rel=1e-9), f"{name}: lr {lr}, wd {wd}"
    # 3 decoder layers x norm1..3 x (weight, bias)
    assert seen["norm"] == 18, seen
    assert all(seen.values()), seen
    for name in ("backbone.bottom_up.prompts.contexts", "backbone.bottom_up.gamma"):
        assert group_of[id(dict(model.named_parameters())[name])] == pytest.approx((1e-4, 1e-4))


@_params([SWIN_T])
def test_swin_trains_at_0_1x_with_undecayed_relative_position_bias_tables(built):
    """The ResNet rows' recipe (backbone lr x0.1, new attention pool x1) plus Swin's rule of no
    weight decay on the relative position bias tables."""
    _, cfg, model = built
    group_of = _lr_and_decay_by_parameter(_optimizer(cfg, model))
    swin = IMAGE_ENCODER_PREFIX + "backbone."
    tables = 0
    for name, p in model.named_parameters():
        if name.startswith(swin):
            undecayed = name.endswith("relative_position_bias_table")
            tables += undecayed
            expected = (1e-5, 0.0 if undecayed else 1e-4)
        elif name.startswith(IMAGE_ENCODER_PREFIX + "attnpool."):
            expected = (1e-4, 1e-4)
        else:
            continue
        assert group_of[id(p)] == pytest.approx(expected, rel=1e-9), name
    assert tables == 12  # one per block


def poly_with_warmup_lr(it, base_lr, max_iter, power, min_lr, warmup_iters, warmup_ratio):
    """mmcv's poly policy (absolute min_lr) with linear warm-up, written out independently."""
    lr = (base_lr - min_lr) * (1 - min(it, max_iter) / max_iter) ** power + min_lr
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


@_params([RN50])
def test_ade20k_lr_schedule_is_poly_with_linear_warmup(built):
    _, cfg, model = built
    optimizer = _optimizer(cfg, model)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    assert sorted(set(base_lrs)) == pytest.approx([1e-5, 1e-4])
    cfg.lr_multiplier.optimizer = optimizer
    scheduler = instantiate(cfg.lr_multiplier)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)

    recipe = dict(max_iter=80000, power=0.9, min_lr=1e-6, warmup_iters=1500, warmup_ratio=1e-6)
    # iteration 0: the warm-up starts at 1e-6 of the base rate
    main = base_lrs.index(1e-4)
    assert optimizer.param_groups[main]["lr"] == pytest.approx(1e-4 * 1e-6, rel=1e-3)
    checkpoints = [0, 1, 750, 1499, 1500, 1501, 20000, 40000, 79999, 80000]
    for it in range(checkpoints[-1] + 1):
        if it in checkpoints:
            for base, group in zip(base_lrs, optimizer.param_groups):
                expected = poly_with_warmup_lr(it, base, **recipe)
                assert group["lr"] == pytest.approx(expected, rel=1e-6, abs=1e-15), (it, base)
        scheduler.step()
    assert optimizer.param_groups[main]["lr"] == pytest.approx(1e-6)  # min_lr, absolute


@pytest.mark.parametrize("path", ADE20K_CONFIGS, ids=[_id(p) for p in ADE20K_CONFIGS])
def test_ade20k_configs_follow_the_official_recipe(path):
    cfg = _load(path)
    vit = "vit" in path
    crop = 640 if vit else 512
    assert cfg.optimizer._target_ is torch.optim.AdamW
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (1e-4, 1e-4)
    keys = cfg.optimizer.params.custom_keys
    assert keys["bottom_up.image_encoder."]["lr_mult"] == 0.1
    assert cfg.train.max_iter == 80000
    schedule = cfg.lr_multiplier
    assert (schedule.power, schedule.min_lr, schedule.warmup_iters) == (0.9, 1e-6, 1500)
    assert schedule.warmup_ratio == 1e-6
    assert cfg.dataloader.train.total_batch_size == 32
    # ADEChallengeData2016 as extracted, labels as mmseg reads them (reduce_zero_label)
    assert cfg.dataloader.train.dataset.names == "ade20k_challenge_train"
    assert cfg.dataloader.test.dataset.names == "ade20k_challenge_val"
    assert cfg.dataloader.train.mapper.augmentations.crop_size == crop
    for split in ("train", "test"):  # mmseg's Resize: img_scale (2048, crop), mmcv's OpenCV resize
        augmentations = instantiate(cfg.dataloader[split].mapper.augmentations)
        assert tuple(augmentations[0].scale) == (2048, crop)
        assert augmentations[0].backend == "opencv"
    assert cfg.dataloader.train.mapper.image_format == "RGB"
    assert cfg.model.test_mode == "slide"
    assert tuple(cfg.model.crop_size) == (crop, crop)
    assert tuple(cfg.model.stride) == ((426, 426) if vit else (341, 341))
    assert cfg.model.sem_seg_head.num_classes == NUM_ADE20K_CLASSES
    assert cfg.model.sem_seg_head.loss_reduction == "all_pixels"
    if _is_denseclip(path):
        from denseclip.data import ADE20K_CLASSES

        prompts = cfg.model.backbone.bottom_up.prompts
        assert list(prompts.class_names) == list(ADE20K_CLASSES)
        assert prompts.class_token_length == 5
        assert prompts.text_encoder.context_length == 13  # 5 name tokens + 8 contexts
        assert cfg.model.backbone.bottom_up.context_decoder.num_layers == 3


# ---------------------------------------------------------------------------------- tiny configs


@pytest.mark.parametrize("path", SYNTHETIC_CONFIGS, ids=[_id(p) for p in SYNTHETIC_CONFIGS])
def test_synthetic_configs_defaults(path):
    """Tiny configs: built-in synthetic data, batch 8, 128x128 images, from scratch, a CPU-minutes
    budget evaluated at the end, and the model's classes are the dataset's."""
    from omegaconf import OmegaConf

    from denseclip.data.catalog import dataset_class_names

    cfg = _load(path)
    train_names = cfg.dataloader.train.dataset.names
    assert train_names.startswith("synthetic_") and train_names.endswith("_train")
    assert cfg.dataloader.test.dataset.names == train_names[: -len("train")] + "val"
    assert cfg.dataloader.train.total_batch_size == 8
    assert cfg.model.backbone.bottom_up.image_encoder.input_resolution == 128
    assert cfg.train.init_checkpoint == ""
    # the exact iteration count is a tuning choice; the demo budget is CPU minutes
    assert 0 < cfg.train.max_iter <= 2000
    assert cfg.train.eval_period == cfg.train.max_iter

    classes = dataset_class_names(train_names)
    assert classes, f"{train_names} has no class names in its metadata"
    model = OmegaConf.to_container(cfg, resolve=True)["model"]
    num_classes = list(config_fields(model, "num_classes"))
    assert num_classes and all(k == len(classes) for k in num_classes), (num_classes, classes)
    class_names = list(config_fields(model, "class_names"))
    assert all(list(names) == classes for names in class_names), (class_names, classes)
    assert bool(class_names) == _is_denseclip(path)


@_params([p for p in SYNTHETIC_CONFIGS if _is_sem_seg(p)])
def test_tiny_sem_seg_model_trains_and_predicts_at_128(built):
    from denseclip.data import SYNTHETIC_CLASSES

    path, _, model = built
    torch.manual_seed(0)
    batch = [
        {
            "image": torch.randint(0, 256, (3, 128, 128), dtype=torch.uint8),
            "sem_seg": torch.randint(0, len(SYNTHETIC_CLASSES), (128, 128)),
            "height": 128,
            "width": 128,
        }
        for _ in range(2)
    ]
    model.train()
    losses = model(batch)
    assert losses and all(torch.isfinite(v) for v in losses.values()), losses
    assert ("loss_aux_text" in losses) == _is_denseclip(path), sorted(losses)
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    assert outputs[0]["sem_seg"].shape == (len(SYNTHETIC_CLASSES), 128, 128)
    assert math.isfinite(outputs[0]["sem_seg"].sum().item())
