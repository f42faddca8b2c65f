"""Tests that kill the mutants the rest of the suite let survive (tools/mutation_test.py).

Each test pins one behaviour of the numeric core that no other test distinguishes from a small
change of the code (docs/development.md, "Mutation testing", lists the mutants).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denseclip.losses import box_seg_aux_loss, semantic_cross_entropy
from denseclip.solver import (
    AdamWWithGradClip,
    PolyLRWithWarmup,
    clip_vit_lr_decay_rate,
    layer_decay_param_groups,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# ----------------------------------------------------------------------------- losses.py


def test_valid_pixels_loss_of_a_single_valid_pixel_is_its_cross_entropy():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.5, 1.0]]]])  # 1×2×1×2
    targets = torch.tensor([[[1, 255]]])
    loss = semantic_cross_entropy(logits, targets, reduction="valid_pixels")
    expected = math.log(math.exp(2.0) + math.exp(0.5)) - 0.5
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_box_loss_of_a_single_covered_cell_of_one_class_is_its_bce():
    # A 4×4 px box covers one stride-4 cell; with one class the mean runs over that cell only.
    logits = torch.tensor([[[[0.3, -1.0], [2.0, 0.5]]]])  # 1×1×2×2 at stride 4 of an 8×8 batch
    loss = box_seg_aux_loss(
        logits, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [torch.tensor([0])], (8, 8)
    )
    expected = F.binary_cross_entropy_with_logits(torch.tensor(0.3), torch.tensor(1.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------- solver.py


def test_clip_vit_lr_decay_defaults_to_no_decay_over_12_blocks():
    assert clip_vit_lr_decay_rate("image_encoder.conv1.weight") == 1.0
    block_0 = "image_encoder.transformer.resblocks.0.attn.in_proj_weight"
    assert clip_vit_lr_decay_rate(block_0, 0.5) == pytest.approx(0.5**12)


def test_layer_decay_groups_default_to_no_weight_decay_on_norms():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    groups = layer_decay_param_groups(
        model, base_lr=1.0, weight_decay=0.05, lr_decay_rate=0.7, num_layers=12
    )
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model[1].weight)] == 0.0
    assert decay_of[id(model[0].weight)] == 0.05


def test_poly_schedule_defaults_are_mmcvs_power_min_lr_and_warmup_ratio():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = PolyLRWithWarmup(optimizer, max_iter=10, warmup_iters=4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 1e-6, rel=1e-9)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    expected = (0.1 - 1e-6) * 0.5**0.9 + 1e-6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)


def test_gradient_clipping_defaults_to_the_l2_norm():
    param = nn.Parameter(torch.zeros(2))
    param.grad = torch.tensor([3.0, 4.0])
    AdamWWithGradClip([param], lr=0.0, max_norm=1.0).step()
    torch.testing.assert_close(param.grad, torch.tensor([0.6, 0.8]))
