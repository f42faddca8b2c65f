"""Specification of ``denseclip.losses.semantic_cross_entropy`` and the Semantic FPN head."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from denseclip.losses import LOSS_REDUCTIONS, semantic_cross_entropy
from denseclip.sem_seg_head import DenseCLIPSemSegFPNHead

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# ----------------------------------------------------------------------------- cross-entropy

# Two classes on a 2×2 image; pixel (1, 1) is ignored.
LOGITS = torch.tensor([[[[1.0, 0.0], [2.0, -1.0]], [[0.0, 1.0], [0.5, 3.0]]]])  # 1×2×2×2
TARGETS = torch.tensor([[[0, 0], [1, 255]]])  # 1×2×2


def ce(logits, target):
    """-log softmax(logits)[target], by hand."""
    return math.log(sum(math.exp(v) for v in logits)) - logits[target]


VALID_TERMS = [ce([1.0, 0.0], 0), ce([0.0, 1.0], 0), ce([2.0, 0.5], 1)]


def test_all_pixels_reduction_divides_by_every_label_pixel():
    loss = semantic_cross_entropy(LOGITS, TARGETS, reduction="all_pixels")
    assert loss.item() == pytest.approx(sum(VALID_TERMS) / 4, rel=1e-6)


def test_valid_pixels_reduction_divides_by_non_ignored_pixels():
    loss = semantic_cross_entropy(LOGITS, TARGETS, reduction="valid_pixels")
    assert loss.item() == pytest.approx(sum(VALID_TERMS) / 3, rel=1e-6)


def test_default_reduction_is_mmsegs_all_pixels():
    default = semantic_cross_entropy(LOGITS, TARGETS)
    assert default.item() == pytest.approx(sum(VALID_TERMS) / 4, rel=1e-6)


def test_ignore_value_is_configurable():
    targets = torch.tensor([[[0, 0], [1, 7]]])
    loss = semantic_cross_entropy(LOGITS, targets, ignore_value=7, reduction="valid_pixels")
    assert loss.item() == pytest.approx(sum(VALID_TERMS) / 3, rel=1e-6)


def test_all_pixels_reduction_averages_over_the_whole_batch():
    logits = torch.cat([LOGITS, torch.zeros_like(LOGITS)])
    targets = torch.tensor([[[0, 0], [1, 255]], [[255, 255], [255, 1]]])
    loss = semantic_cross_entropy(logits, targets, reduction="all_pixels")
    expected = (sum(VALID_TERMS) + math.log(2)) / 8
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_low_resolution_logits_are_resized_bilinearly_to_the_labels(reduction):
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 2, 3)
    targets = torch.randint(0, 3, (2, 8, 12))
    targets[0, :3, :5] = 255
    resized = F.interpolate(logits, size=(8, 12), mode="bilinear", align_corners=False)
    assert semantic_cross_entropy(logits, targets, reduction=reduction) == pytest.approx(
        semantic_cross_entropy(resized, targets, reduction=reduction).item(), rel=1e-6
    )
    per_pixel = F.cross_entropy(resized, targets, ignore_index=255, reduction="none")
    count = per_pixel.numel() if reduction == "all_pixels" else (targets != 255).sum()
    assert semantic_cross_entropy(logits, targets, reduction=reduction).item() == pytest.approx(
        (per_pixel.sum() / count).item(), rel=1e-6
    )


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_all_ignored_labels_give_zero_loss_and_a_finite_gradient(reduction):
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    loss = semantic_cross_entropy(logits, torch.full((1, 2, 2), 255), reduction=reduction)
    assert loss.item() == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("gap", [50.0, 90.0, 200.0, 1e4])
def test_a_label_far_below_the_best_class_costs_the_gap_in_float32(gap):
    """exp(-gap) is subnormal or 0 in float32 from a gap of about 87 on: the loss is still the
    gap (log-softmax), not inf or the log of a rounded-off probability."""
    logits = torch.tensor([0.0, gap, 0.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    logits = logits.contiguous().requires_grad_()
    loss = semantic_cross_entropy(logits, torch.zeros(1, 2, 2, dtype=torch.long))
    expected = gap + math.log1p(2 * math.exp(-gap))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # d loss / d logits = softmax − onehot, split over the 4 pixels
    torch.testing.assert_close(logits.grad[0, :, 0, 0], torch.tensor([-0.25, 0.25, 0.0]))


def test_ignored_pixels_never_index_the_classes():
    """One class, so that any class index but 0 would be out of range: ignored pixels (255)
    take no part in the loss nor in its gradient."""
    logits = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.zeros(2, 6, 6, dtype=torch.long)
    targets[0, :2] = 255
    loss = semantic_cross_entropy(logits, targets, reduction="valid_pixels")
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(logits.grad) == 0


def _resized_cross_entropy(logits, targets, reduction):
    """The loss written out on the whole batch: bilinear resize, per-pixel CE, mean."""
    resized = F.interpolate(logits, size=targets.shape[-2:], mode="bilinear", align_corners=False)
    per_pixel = F.cross_entropy(resized, targets, ignore_index=255, reduction="none")
    count = per_pixel.numel() if reduction == "all_pixels" else (targets != 255).sum()
    return per_pixel.sum() / count


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_the_gradient_equals_that_of_the_loss_written_out(reduction):
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 4, (3, 12, 20))
    targets[1, :5] = 255
    (grad,) = torch.autograd.grad(
        semantic_cross_entropy(logits, targets, reduction=reduction), logits
    )
    (expected,) = torch.autograd.grad(_resized_cross_entropy(logits, targets, reduction), logits)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-15)


def _saved_sizes(loss_function, *args):
    """numel of every tensor ``loss_function(*args)`` saves for its backward pass."""
    sizes = []

    def pack(tensor):
        sizes.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss_function(*args)
    return sizes


def test_training_keeps_no_full_resolution_logits():
    """Nothing of the B×K×H×W resized logits (nor one image's K×H×W) stays saved for the
    backward pass: they are recomputed there (the written-out loss keeps them)."""
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    targets = torch.randint(0, 5, (2, 64, 64))
    assert max(_saved_sizes(semantic_cross_entropy, logits, targets)) < 5 * 64 * 64
    written_out = _saved_sizes(_resized_cross_entropy, logits, targets, "all_pixels")
    assert max(written_out) >= 2 * 5 * 64 * 64


def test_training_resizes_each_images_logits_once(monkeypatch):
    """The loss and its gradient come from one resize per image: the full-resolution logits
    are neither kept for the backward pass nor recomputed there."""
    calls = []
    interpolate = F.interpolate

    def counting_interpolate(*args, **kwargs):
        calls.append(args[0].shape)
        return interpolate(*args, **kwargs)

    monkeypatch.setattr(F, "interpolate", counting_interpolate)
    logits = torch.randn(3, 5, 4, 4, requires_grad=True)
    semantic_cross_entropy(logits, torch.randint(0, 5, (3, 16, 16))).backward()
    assert calls == [(1, 5, 4, 4)] * 3
    assert logits.grad.abs().sum() > 0


def test_unknown_reduction_is_rejected():
    with pytest.raises(ValueError, match="reduction"):
        semantic_cross_entropy(LOGITS, TARGETS, reduction="mean")


def test_half_precision_logits_give_a_float32_loss():
    loss = semantic_cross_entropy(LOGITS.half(), TARGETS)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(sum(VALID_TERMS) / 4, rel=1e-3)


# ----------------------------------------------------------------------------- head

FPN_CHANNELS = 16
PYRAMID = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}


def make_head(**kwargs):
    torch.manual_seed(0)
    args = dict(
        input_shape={f: ShapeSpec(channels=FPN_CHANNELS, stride=s) for f, s in PYRAMID.items()},
        num_classes=3,
        conv_dims=8,
        common_stride=4,
        norm="BN",
        ignore_value=255,
    )
    args.update(kwargs)
    return DenseCLIPSemSegFPNHead(**args)


def pyramid(batch=2, height=64, width=96, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        f: torch.randn(batch, FPN_CHANNELS, height // s, width // s, generator=generator)
        for f, s in PYRAMID.items()
    }


class Capture:
    """Keeps the input and output of a module's last forward."""

    def __init__(self, module: nn.Module):
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.input, self.output = inputs[0], output


def test_head_defaults_to_mmseg_dropout_and_reduction():
    head = make_head()
    assert isinstance(head.dropout, nn.Dropout2d)
    assert head.dropout.p == pytest.approx(0.1)
    assert head.loss_reduction == "all_pixels"


def test_head_without_dropout_uses_identity():
    assert isinstance(make_head(dropout=0.0).dropout, nn.Identity)


def test_dropout_zeroes_whole_channels_in_training():
    head = make_head(dropout=0.5, conv_dims=16).train()
    seen = Capture(head.dropout)
    torch.manual_seed(0)
    head.layers(pyramid())
    kept = (seen.output != 0).flatten(2).any(-1)  # B×channels
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(seen.output[kept], seen.input[kept] * 2)


def test_dropout_is_inactive_in_eval():
    head = make_head(dropout=0.5, conv_dims=16).eval()
    seen = Capture(head.dropout)
    with torch.no_grad():
        first = head(pyramid())[0]
        assert torch.equal(seen.output, seen.input)
        torch.testing.assert_close(head(pyramid())[0], first)


def test_eval_output_is_logits_at_input_resolution():
    head = make_head().eval()
    with torch.no_grad():
        logits, losses = head(pyramid(batch=2, height=64, width=96))
    assert logits.shape == (2, 3, 64, 96)
    assert losses == {}


def test_predictor_is_initialised_normal_std_001_with_zero_bias():
    head = make_head(num_classes=150, conv_dims=64)
    weight = head.predictor.weight
    assert weight.shape == (150, 64, 1, 1)
    assert weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert abs(weight.mean().item()) < 1e-3
    assert torch.count_nonzero(head.predictor.bias) == 0


@pytest.mark.parametrize("reduction", LOSS_REDUCTIONS)
def test_training_returns_weighted_loss_sem_seg_of_the_stride_4_logits(reduction):
    head = make_head(loss_reduction=reduction, loss_weight=2.0).train()
    logits = Capture(head.predictor)
    targets = torch.randint(0, 3, (2, 64, 96), generator=torch.Generator().manual_seed(1))
    targets[:, :10] = 255
    predictions, losses = head(pyramid(), targets)
    assert predictions is None
    assert list(losses) == ["loss_sem_seg"]
    assert logits.output.shape == (2, 3, 16, 24)
    expected = 2.0 * semantic_cross_entropy(logits.output, targets, 255, reduction)
    torch.testing.assert_close(losses["loss_sem_seg"], expected)


def test_valid_pixels_loss_equals_detectron2_semsegfpnhead_loss():
    head = make_head(loss_reduction="valid_pixels")
    torch.manual_seed(0)
    predictions = torch.randn(2, 3, 16, 24)
    targets = torch.randint(0, 3, (2, 64, 96))
    targets[0, 5:40] = 255
    ours = head.losses(predictions, targets)["loss_sem_seg"]
    detectron2 = SemSegFPNHead.losses(head, predictions, targets)["loss_sem_seg"]
    torch.testing.assert_close(ours, detectron2)
