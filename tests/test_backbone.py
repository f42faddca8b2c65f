"""Specification of ``denseclip.backbone`` (the detectron2 backbones around the CLIP encoders) and
of the FPN over them (``denseclip.pyramids``)."""

import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling import FPN

from denseclip.backbone import CLIPImageBackbone, DenseCLIPBackbone
from denseclip.prompting import score_maps
from denseclip.pyramids import FPNWithSideOutputs

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 3  # the conftest's three class names
C = 32  # the tiny modules' embedding width
WIDTH = 8  # the tiny CLIP ResNet's stem width
STAGE_CHANNELS = {"res2": 4 * WIDTH, "res3": 8 * WIDTH, "res4": 16 * WIDTH, "res5": 32 * WIDTH}
STAGE_STRIDES = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
STAGES = ["res2", "res3", "res4", "res5"]


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.randn(2, 3, 64, 96)


def build_fpn(bottom_up, out_channels=16):
    return FPNWithSideOutputs(
        bottom_up=bottom_up, in_features=STAGES, out_channels=out_channels, top_block=None
    )


# ----------------------------------------------------------------------------- DenseCLIPBackbone


def test_output_shape_adds_k_score_channels_to_res5(backbone):
    shapes = backbone.output_shape()
    assert list(shapes) == STAGES
    assert {f: s.channels for f, s in shapes.items()} == {
        **STAGE_CHANNELS,
        "res5": 8 * WIDTH * 4 + K,
    }
    assert {f: s.stride for f, s in shapes.items()} == STAGE_STRIDES
    assert backbone.score_concat_feature == "res5"
    assert backbone.size_divisibility == 32


def test_forward_returns_stages_with_declared_shapes_plus_score_map_and_text(backbone, images):
    with torch.no_grad():
        outputs = backbone(images)
    assert set(outputs) == {*STAGES, "score_map", "text_embeddings"}
    for name, spec in backbone.output_shape().items():
        assert outputs[name].shape == (2, spec.channels, 64 // spec.stride, 96 // spec.stride)
    assert outputs["score_map"].shape == (2, K, 2, 3)
    assert outputs["text_embeddings"].shape == (2, K, C)


def test_stage_features_are_the_image_encoders(backbone, images):
    with torch.no_grad():
        outputs = backbone(images)
        encoded = backbone.image_encoder(images)
    for name in ["res2", "res3", "res4"]:
        torch.testing.assert_close(outputs[name], encoded[name])
    torch.testing.assert_close(outputs["res5"][:, : STAGE_CHANNELS["res5"]], encoded["res5"])


@pytest.mark.parametrize("score_scale", [1.0, 1 / 0.07], ids=["segmentation", "detection"])
def test_last_k_res5_channels_are_the_score_map_times_score_scale(
    make_backbone, images, score_scale
):
    backbone = make_backbone(score_scale=score_scale).eval()
    with torch.no_grad():
        outputs = backbone(images)
    torch.testing.assert_close(
        outputs["res5"][:, -K:], outputs["score_map"] * score_scale, rtol=0, atol=0
    )


def test_score_map_is_cosine_of_dense_embedding_and_returned_text(backbone, images):
    with torch.no_grad():
        outputs = backbone(images)
        dense = backbone.image_encoder(images)["dense_embedding"]
    torch.testing.assert_close(outputs["score_map"], score_maps(dense, outputs["text_embeddings"]))


def test_score_map_values_lie_in_minus_one_to_one(backbone, images):
    with torch.no_grad():
        scores = backbone(images * 10)["score_map"]
    assert scores.abs().max() <= 1 + 1e-6


def test_without_context_decoder_there_is_no_gamma_and_text_is_shared(make_backbone, images):
    backbone = make_backbone(with_decoder=False).eval()
    assert backbone.context_decoder is None
    assert not hasattr(backbone, "gamma")
    assert not any("gamma" in name for name, _ in backbone.named_parameters())
    with torch.no_grad():
        outputs = backbone(images)
        expected_text = backbone.prompts()
    assert outputs["text_embeddings"].shape == (1, K, C)
    torch.testing.assert_close(outputs["text_embeddings"], expected_text)
    assert outputs["score_map"].shape == (2, K, 2, 3)
    assert backbone.output_shape()["res5"].channels == STAGE_CHANNELS["res5"] + K


def test_gamma_init_is_configurable(make_backbone):
    assert torch.all(make_backbone(gamma_init=0.5).gamma == 0.5)


def test_out_features_subset_keeps_the_score_stage(make_backbone, images):
    backbone = make_backbone(out_features=["res4", "res5"]).eval()
    assert list(backbone.output_shape()) == ["res4", "res5"]
    with torch.no_grad():
        outputs = backbone(images)
    assert set(outputs) == {"res4", "res5", "score_map", "text_embeddings"}


def test_unknown_out_feature_is_rejected(make_image_encoder, make_prompts):
    with pytest.raises(ValueError, match="res6"):
        DenseCLIPBackbone(make_image_encoder(), make_prompts(), out_features=["res5", "res6"])


def test_gradients_reach_contexts_gamma_and_decoder_in_training(make_backbone, images):
    backbone = make_backbone().train()
    outputs = backbone(images)
    (outputs["score_map"].sum() + outputs["res2"].mean()).backward()
    assert backbone.gamma.grad is not None and backbone.gamma.grad.abs().sum() > 0
    assert backbone.prompts.contexts.grad is not None
    assert backbone.prompts.contexts.grad.abs().sum() > 0
    decoder_grads = [p.grad for p in backbone.context_decoder.parameters()]
    assert all(g is not None for g in decoder_grads)


# ----------------------------------------------------------------------------- CLIPImageBackbone


def test_clip_image_backbone_returns_only_the_stages(make_image_encoder, images):
    backbone = CLIPImageBackbone(make_image_encoder()).eval()
    with torch.no_grad():
        outputs = backbone(images)
    assert list(outputs) == STAGES
    shapes = backbone.output_shape()
    assert {f: s.channels for f, s in shapes.items()} == STAGE_CHANNELS
    assert {f: s.stride for f, s in shapes.items()} == STAGE_STRIDES
    for name in STAGES:
        assert outputs[name].shape[1] == STAGE_CHANNELS[name]


def test_clip_image_backbone_works_without_attention_pool(make_image_encoder, images):
    backbone = CLIPImageBackbone(make_image_encoder(with_attention_pool=False)).eval()
    with torch.no_grad():
        outputs = backbone(images)
    assert outputs["res5"].shape == (2, STAGE_CHANNELS["res5"], 2, 3)


# ----------------------------------------------------------------------------- FPNWithSideOutputs


def test_fpn_returns_pyramid_plus_side_outputs(backbone, images):
    fpn = build_fpn(backbone).eval()
    with torch.no_grad():
        outputs = fpn(images)
        bottom_up = backbone(images)
    assert set(outputs) == {"p2", "p3", "p4", "p5", "score_map", "text_embeddings"}
    for name, stride in zip(["p2", "p3", "p4", "p5"], [4, 8, 16, 32]):
        assert outputs[name].shape == (2, 16, 64 // stride, 96 // stride)
    torch.testing.assert_close(outputs["score_map"], bottom_up["score_map"])
    torch.testing.assert_close(outputs["text_embeddings"], bottom_up["text_embeddings"])


def test_fpn_output_shape_lists_only_the_pyramid(backbone):
    shapes = build_fpn(backbone).output_shape()
    assert shapes == {
        "p2": ShapeSpec(channels=16, stride=4),
        "p3": ShapeSpec(channels=16, stride=8),
        "p4": ShapeSpec(channels=16, stride=16),
        "p5": ShapeSpec(channels=16, stride=32),
    }


def test_fpn_res5_lateral_conv_takes_the_k_extra_channels(backbone):
    fpn = build_fpn(backbone)
    assert fpn.fpn_lateral5.in_channels == STAGE_CHANNELS["res5"] + K
    assert fpn.fpn_lateral4.in_channels == STAGE_CHANNELS["res4"]


def test_fpn_over_the_baseline_has_no_side_outputs(make_image_encoder, images):
    fpn = build_fpn(CLIPImageBackbone(make_image_encoder())).eval()
    with torch.no_grad():
        outputs = fpn(images)
    assert set(outputs) == {"p2", "p3", "p4", "p5"}
    assert fpn.fpn_lateral5.in_channels == STAGE_CHANNELS["res5"]


def test_fpn_side_outputs_come_from_the_current_forward(backbone):
    fpn = build_fpn(backbone).eval()
    torch.manual_seed(0)
    first, second = torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fpn(first)
        outputs = fpn(second)
        expected = backbone(second)["score_map"]
    torch.testing.assert_close(outputs["score_map"], expected)


def test_fpn_leaves_no_hook_on_its_bottom_up(backbone, images):
    """The side outputs are caught for one call only: no hook stays on the bottom-up (which the
    Predictor also calls alone, for score maps)."""
    fpn = build_fpn(backbone).eval()
    with torch.no_grad():
        fpn(images)
    assert not backbone._forward_hooks


def test_fpn_top_down_path_takes_the_lateral_sizes(backbone, images):
    """At sides that are multiples of 32 the pyramid is detectron2's FPN bit for bit; at odd
    sides each level has the size of the bottom-up stage it comes from (here 17, 8, 4, 2 rows
    at strides 4..32), where 2× upsampling would not fit."""
    fpn = build_fpn(backbone).eval()
    odd = torch.randn(1, 3, 70, 100)
    with torch.no_grad():
        outputs, stock = fpn(images), FPN.forward(fpn, images)
        odd_outputs, stages = fpn(odd), backbone(odd)
    for name in stock:
        assert torch.equal(outputs[name], stock[name]), name
    for level, stage in zip(["p2", "p3", "p4", "p5"], STAGES):
        assert odd_outputs[level].shape[-2:] == stages[stage].shape[-2:]
    assert [odd_outputs[level].shape[-2] for level in ["p2", "p3", "p4", "p5"]] == [17, 8, 4, 2]
