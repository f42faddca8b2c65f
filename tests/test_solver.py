"""Specification of ``denseclip.solver``: mmcv-style parameter groups and the poly LR schedule."""

import os

import pytest
import torch
from torch import nn

from detectron2.config import LazyConfig, instantiate

from denseclip.solver import PolyLRWithWarmup, param_groups_by_keys

pytestmark = pytest.mark.usefixtures("single_torch_thread")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------- param groups


def scalar_param(requires_grad=True):
    return nn.Parameter(torch.zeros(1), requires_grad=requires_grad)


def module_tree(**children):
    module = nn.Module()
    for name, child in children.items():
        if isinstance(child, nn.Parameter):
            module.register_parameter(name, child)
        else:
            module.add_module(name, child)
    return module


@pytest.fixture
def toy():
    """Parameters named like DenseCLIP's, one of them frozen."""
    return module_tree(
        backbone=module_tree(
            bottom_up=module_tree(
                image_encoder=module_tree(conv=module_tree(weight=scalar_param())),
                prompts=module_tree(
                    contexts=scalar_param(),
                    text_encoder=module_tree(weight=scalar_param(requires_grad=False)),
                ),
            )
        ),
        x=module_tree(
            decoder=nn.ModuleList([module_tree(norm1=module_tree(weight=scalar_param()))])
        ),
        head=module_tree(
            norm=module_tree(weight=scalar_param()),
            conv=module_tree(weight=scalar_param()),
            skip=scalar_param(),
        ),
    )


def settings_by_name(model, groups):
    """{parameter name: (lr, weight_decay)} of the parameters that are in some group."""
    names = {id(p): n for n, p in model.named_parameters()}
    settings = {}
    for group in groups:
        for param in group["params"]:
            assert names[id(param)] not in settings, "parameter in two groups"
            settings[names[id(param)]] = (group["lr"], group["weight_decay"])
    return settings


BASE_LR, WD = 1e-3, 0.05


def test_without_custom_keys_every_trainable_parameter_gets_the_defaults(toy):
    settings = settings_by_name(toy, param_groups_by_keys(toy, BASE_LR, WD))
    trainable = [n for n, p in toy.named_parameters() if p.requires_grad]
    assert settings == {name: (BASE_LR, WD) for name in trainable}


def test_longest_matching_key_wins_and_only_its_multipliers_apply(toy):
    custom_keys = {
        "bottom_up.image_encoder.": {"lr_mult": 0.1},
        "image_encoder": {"lr_mult": 0.5, "decay_mult": 0.5},  # shorter: loses
        "norm": {"decay_mult": 0.0},
    }
    settings = settings_by_name(toy, param_groups_by_keys(toy, BASE_LR, WD, custom_keys))
    assert settings["backbone.bottom_up.image_encoder.conv.weight"] == pytest.approx((1e-4, WD))
    assert settings["x.decoder.0.norm1.weight"] == (BASE_LR, 0.0)
    assert settings["head.norm.weight"] == (BASE_LR, 0.0)
    assert settings["head.conv.weight"] == (BASE_LR, WD)


def test_equally_long_keys_are_tried_alphabetically(toy):
    custom_keys = {
        "norm1": {"decay_mult": 0.0},
        "0.nor": {"lr_mult": 3.0},  # as long as "norm1" and sorts first: wins, decay stays 1
    }
    settings = settings_by_name(toy, param_groups_by_keys(toy, BASE_LR, WD, custom_keys))
    assert settings["x.decoder.0.norm1.weight"] == pytest.approx((3e-3, WD))


def test_frozen_and_zero_lr_parameters_are_left_out(toy):
    custom_keys = {"skip": {"lr_mult": 0.0}, "text_encoder": {"lr_mult": 0.0}}
    settings = settings_by_name(toy, param_groups_by_keys(toy, BASE_LR, WD, custom_keys))
    assert "backbone.bottom_up.prompts.text_encoder.weight" not in settings
    assert "head.skip" not in settings
    assert settings["backbone.bottom_up.prompts.contexts"] == (BASE_LR, WD)
    assert len(settings) == 5


def test_parameters_with_equal_settings_share_a_group(toy):
    custom_keys = {"image_encoder": {"lr_mult": 0.1}, "norm": {"decay_mult": 0.0}}
    groups = param_groups_by_keys(toy, BASE_LR, WD, custom_keys)
    assert sorted((g["lr"], g["weight_decay"], len(g["params"])) for g in groups) == [
        (pytest.approx(1e-4), WD, 1),
        (BASE_LR, 0.0, 2),
        (BASE_LR, WD, 3),
    ]


def test_groups_are_accepted_by_adamw(toy):
    groups = param_groups_by_keys(toy, BASE_LR, WD, {"norm": {"decay_mult": 0.0}})
    optimizer = torch.optim.AdamW(groups, lr=BASE_LR, weight_decay=WD)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == 6


def test_official_recipe_keys_on_the_tiny_model(tiny_config):
    """configs/common/optim.py: image encoder at 0.1×, text encoder out, only the context
    decoder's norm1..3 without decay (the official 'norm' key matches nothing else)."""
    common = LazyConfig.load(os.path.join(REPO_ROOT, "configs/common/optim.py"))
    custom_keys = dict(common.AdamW.params.custom_keys)
    torch.manual_seed(0)
    model = instantiate(tiny_config.model)
    settings = settings_by_name(model, param_groups_by_keys(model, 1e-4, 1e-4, custom_keys))
    names = [n for n, _ in model.named_parameters()]
    for name in names:
        if ".text_encoder." in name:
            assert name not in settings
        elif ".image_encoder." in name:
            assert settings[name] == pytest.approx((1e-5, 1e-4)), name
        elif any(f".norm{i}." in name for i in (1, 2, 3)):
            assert settings[name] == (1e-4, 0.0), name
        else:
            assert settings[name] == (1e-4, 1e-4), name
    assert settings["backbone.bottom_up.prompts.contexts"] == (1e-4, 1e-4)
    assert settings["backbone.bottom_up.gamma"] == (1e-4, 1e-4)
    assert any("sem_seg_head" in n and ".norm." in n for n in settings)  # head BN keeps decay


# ----------------------------------------------------------------------------- PolyLRWithWarmup

MAX_ITER, WARMUP_ITERS, WARMUP_RATIO, MIN_LR, POWER = 100, 10, 0.01, 1e-4, 0.9
BASE_LRS = (1e-2, 1e-3)


def make_scheduler():
    params = [nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(
        [{"params": [params[0]], "lr": BASE_LRS[0]}, {"params": [params[1]], "lr": BASE_LRS[1]}]
    )
    scheduler = PolyLRWithWarmup(
        optimizer,
        max_iter=MAX_ITER,
        power=POWER,
        min_lr=MIN_LR,
        warmup_iters=WARMUP_ITERS,
        warmup_ratio=WARMUP_RATIO,
    )
    return optimizer, scheduler


def advance(optimizer, scheduler, iterations):
    for _ in range(iterations):
        optimizer.step()
        scheduler.step()


def mmcv_lr(base, it):
    """mmcv PolyLrUpdaterHook (min_lr absolute) with linear warm-up on the regular lr."""
    it = min(it, MAX_ITER)
    lr = (base - MIN_LR) * (1 - it / MAX_ITER) ** POWER + MIN_LR
    if it < WARMUP_ITERS:
        lr *= 1 - (1 - it / WARMUP_ITERS) * (1 - WARMUP_RATIO)
    return lr


@pytest.mark.parametrize(
    "iteration, expected",
    [
        (0, [1e-2 * 0.01, 1e-3 * 0.01]),
        (
            5,
            [
                ((1e-2 - 1e-4) * 0.95**0.9 + 1e-4) * (1 - 0.5 * 0.99),
                ((1e-3 - 1e-4) * 0.95**0.9 + 1e-4) * (1 - 0.5 * 0.99),
            ],
        ),
        (10, [(1e-2 - 1e-4) * 0.9**0.9 + 1e-4, (1e-3 - 1e-4) * 0.9**0.9 + 1e-4]),
        (50, [(1e-2 - 1e-4) * 0.5**0.9 + 1e-4, (1e-3 - 1e-4) * 0.5**0.9 + 1e-4]),
        (100, [1e-4, 1e-4]),
        (120, [1e-4, 1e-4]),
    ],
    ids=["start", "mid-warmup", "end-of-warmup", "half", "end", "past-the-end"],
)
def test_poly_with_warmup_follows_mmcv(iteration, expected):
    optimizer, scheduler = make_scheduler()
    advance(optimizer, scheduler, iteration)
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert scheduler.get_last_lr() == pytest.approx(expected, rel=1e-9)
    assert lrs == pytest.approx([mmcv_lr(base, iteration) for base in BASE_LRS], rel=1e-9)


def test_poly_without_warmup_starts_at_the_base_lr():
    params = [nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.1)
    PolyLRWithWarmup(optimizer, max_iter=10, power=1.0, min_lr=0.0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_poly_with_warmup_is_monotonic_after_warmup():
    optimizer, scheduler = make_scheduler()
    advance(optimizer, scheduler, WARMUP_ITERS)
    previous = optimizer.param_groups[0]["lr"]
    for _ in range(WARMUP_ITERS, MAX_ITER):
        advance(optimizer, scheduler, 1)
        current = optimizer.param_groups[0]["lr"]
        assert current <= previous
        previous = current


def test_scheduler_state_dict_round_trip_resumes_at_the_same_lr():
    optimizer, scheduler = make_scheduler()
    advance(optimizer, scheduler, 7)
    state = scheduler.state_dict()
    resumed_optimizer, resumed = make_scheduler()
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 7
    assert resumed.get_last_lr() == pytest.approx(scheduler.get_last_lr())
    advance(optimizer, scheduler, 1)
    advance(resumed_optimizer, resumed, 1)
    expected = [mmcv_lr(base, 8) for base in BASE_LRS]
    assert [g["lr"] for g in resumed_optimizer.param_groups] == pytest.approx(expected, rel=1e-9)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(expected, rel=1e-9)
