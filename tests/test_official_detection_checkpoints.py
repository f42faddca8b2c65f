"""Official DenseCLIP detection checkpoints (mmdet 2.17) convert to our COCO configs, and OpenAI
CLIP files convert (tools/convert_clip.py) to encoders that compute what CLIP computes.

The detection checkpoints are fabricated: the official neck and head parameters are written out
by their mmdet names and shapes (from the official configs), the backbone and text side (whose
official names are ours less a prefix, see DENSECLIP_BACKBONE_RULES) are read off our model.
"""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import REPO_ROOT
from helpers import tiny_openai_clip

from detectron2.config import LazyConfig, instantiate

from denseclip.checkpoint import DenseCLIPCheckpointer
from denseclip.checkpoint.official import (
    check_matches_model,
    convert_official_state_dict,
    find_rule_table,
)
from denseclip.checkpoint.official_rules import (
    MASK_RCNN_RULES,
    RETINANET_RULES,
    OfficialCheckpointError,
    PermuteAnchors,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

NUM_CLASSES = 80  # COCO
#: config → (architecture, DenseCLIP or the CLIP baseline)
DETECTION_CONFIGS = {
    "retinanet_denseclip_r50_fpn_1x_coco": ("retinanet", True),
    "retinanet_denseclip_r101_fpn_1x_coco": ("retinanet", True),
    "mask_rcnn_denseclip_r50_fpn_1x_coco": ("mask_rcnn", True),
    "mask_rcnn_denseclip_r101_fpn_1x_coco": ("mask_rcnn", True),
    "retinanet_clip_r50_fpn_1x_coco": ("retinanet", False),
    "mask_rcnn_clip_r50_fpn_1x_coco": ("mask_rcnn", False),
}
#: our bottom-up names → official names (the inverse of DENSECLIP_BACKBONE_RULES)
OUR_BACKBONE_PREFIXES = {
    "backbone.bottom_up.image_encoder.": "backbone.",
    "backbone.bottom_up.prompts.text_encoder.": "text_encoder.",
    "backbone.bottom_up.context_decoder.": "context_decoder.",
}
OUR_BACKBONE_KEYS = {
    "backbone.bottom_up.prompts.contexts": "contexts",
    "backbone.bottom_up.gamma": "gamma",
}
RETINANET_OUTPUTS = {"bbox_head.retina_cls", "bbox_head.retina_reg"}
#: official neck and head modules → ours (weight and bias each), written out one by one
OUR_HEAD_MODULES = {
    "retinanet": {
        "neck.lateral_convs.0.conv": "backbone.fpn_lateral3",
        "neck.lateral_convs.1.conv": "backbone.fpn_lateral4",
        "neck.lateral_convs.2.conv": "backbone.fpn_lateral5",
        "neck.fpn_convs.0.conv": "backbone.fpn_output3",
        "neck.fpn_convs.1.conv": "backbone.fpn_output4",
        "neck.fpn_convs.2.conv": "backbone.fpn_output5",
        "neck.fpn_convs.3.conv": "backbone.top_block.p6",
        "neck.fpn_convs.4.conv": "backbone.top_block.p7",
        "bbox_head.cls_convs.0.conv": "head.cls_subnet.0",
        "bbox_head.cls_convs.1.conv": "head.cls_subnet.2",
        "bbox_head.cls_convs.2.conv": "head.cls_subnet.4",
        "bbox_head.cls_convs.3.conv": "head.cls_subnet.6",
        "bbox_head.reg_convs.0.conv": "head.bbox_subnet.0",
        "bbox_head.reg_convs.1.conv": "head.bbox_subnet.2",
        "bbox_head.reg_convs.2.conv": "head.bbox_subnet.4",
        "bbox_head.reg_convs.3.conv": "head.bbox_subnet.6",
        "bbox_head.retina_cls": "head.cls_score",
        "bbox_head.retina_reg": "head.bbox_pred",
    },
    "mask_rcnn": {
        "neck.lateral_convs.0.conv": "backbone.fpn_lateral2",
        "neck.lateral_convs.1.conv": "backbone.fpn_lateral3",
        "neck.lateral_convs.2.conv": "backbone.fpn_lateral4",
        "neck.lateral_convs.3.conv": "backbone.fpn_lateral5",
        "neck.fpn_convs.0.conv": "backbone.fpn_output2",
        "neck.fpn_convs.1.conv": "backbone.fpn_output3",
        "neck.fpn_convs.2.conv": "backbone.fpn_output4",
        "neck.fpn_convs.3.conv": "backbone.fpn_output5",
        "rpn_head.rpn_conv": "proposal_generator.rpn_head.conv",
        "rpn_head.rpn_cls": "proposal_generator.rpn_head.objectness_logits",
        "rpn_head.rpn_reg": "proposal_generator.rpn_head.anchor_deltas",
        "roi_head.bbox_head.shared_fcs.0": "roi_heads.box_head.fc1",
        "roi_head.bbox_head.shared_fcs.1": "roi_heads.box_head.fc2",
        "roi_head.bbox_head.fc_cls": "roi_heads.box_predictor.cls_score",
        "roi_head.bbox_head.fc_reg": "roi_heads.box_predictor.bbox_pred",
        "roi_head.mask_head.convs.0.conv": "roi_heads.mask_head.mask_fcn1",
        "roi_head.mask_head.convs.1.conv": "roi_heads.mask_head.mask_fcn2",
        "roi_head.mask_head.convs.2.conv": "roi_heads.mask_head.mask_fcn3",
        "roi_head.mask_head.convs.3.conv": "roi_heads.mask_head.mask_fcn4",
        "roi_head.mask_head.upsample": "roi_heads.mask_head.deconv",
        "roi_head.mask_head.conv_logits": "roi_heads.mask_head.predictor",
    },
}


def official_backbone_name(key: str) -> str:
    if key in OUR_BACKBONE_KEYS:
        return OUR_BACKBONE_KEYS[key]
    for ours, official in OUR_BACKBONE_PREFIXES.items():
        if key.startswith(ours):
            return official + key[len(ours) :]
    raise AssertionError(f"no official name for our bottom-up key {key}")


def our_name(key: str, arch: str) -> str:
    """Our name of an official key, from the tables written out above (not the converter's)."""
    if key in OUR_BACKBONE_KEYS.values():
        return next(ours for ours, official in OUR_BACKBONE_KEYS.items() if official == key)
    module, param = key.rsplit(".", 1)
    if module in OUR_HEAD_MODULES[arch]:
        return f"{OUR_HEAD_MODULES[arch][module]}.{param}"
    for ours, official in OUR_BACKBONE_PREFIXES.items():
        if key.startswith(official):
            return ours + key[len(official) :]
    raise AssertionError(f"no name of ours for the official key {key}")


def conv(out_channels, in_channels, kernel):
    return (out_channels, in_channels, kernel, kernel)


def official_head_shapes(arch: str, with_text: bool) -> dict:
    """Official neck and head parameter shapes (mmdet's names, the official configs' sizes)."""
    c5 = 2048 + NUM_CLASSES if with_text else 2048  # DenseCLIP appends K score maps to C5
    modules = {}
    if arch == "retinanet":  # FPN from C3, P6 on C5 ('on_input'), P7; RetinaHead, 9 anchors
        for i, channels in enumerate((512, 1024, c5)):
            modules[f"neck.lateral_convs.{i}.conv"] = conv(256, channels, 1)
        for i in range(5):
            modules[f"neck.fpn_convs.{i}.conv"] = conv(256, c5 if i == 3 else 256, 3)
        for j in range(4):
            modules[f"bbox_head.cls_convs.{j}.conv"] = conv(256, 256, 3)
            modules[f"bbox_head.reg_convs.{j}.conv"] = conv(256, 256, 3)
        modules["bbox_head.retina_cls"] = conv(9 * NUM_CLASSES, 256, 3)
        modules["bbox_head.retina_reg"] = conv(9 * 4, 256, 3)
    else:  # FPN from C2; RPNHead, 3 anchors; Shared2FCBBoxHead; FCNMaskHead
        for i, channels in enumerate((256, 512, 1024, c5)):
            modules[f"neck.lateral_convs.{i}.conv"] = conv(256, channels, 1)
            modules[f"neck.fpn_convs.{i}.conv"] = conv(256, 256, 3)
        modules["rpn_head.rpn_conv"] = conv(256, 256, 3)
        modules["rpn_head.rpn_cls"] = conv(3, 256, 1)
        modules["rpn_head.rpn_reg"] = conv(3 * 4, 256, 1)
        modules["roi_head.bbox_head.shared_fcs.0"] = (1024, 256 * 7 * 7)
        modules["roi_head.bbox_head.shared_fcs.1"] = (1024, 1024)
        modules["roi_head.bbox_head.fc_cls"] = (NUM_CLASSES + 1, 1024)
        modules["roi_head.bbox_head.fc_reg"] = (4 * NUM_CLASSES, 1024)
        for i in range(4):
            modules[f"roi_head.mask_head.convs.{i}.conv"] = conv(256, 256, 3)
        modules["roi_head.mask_head.upsample"] = (256, 256, 2, 2)  # ConvTranspose2d: in, out
        modules["roi_head.mask_head.conv_logits"] = conv(NUM_CLASSES, 256, 1)
    shapes = {}
    for name, weight in modules.items():
        shapes[f"{name}.weight"] = weight
        bias = weight[1] if name.endswith("upsample") else weight[0]
        shapes[f"{name}.bias"] = (bias,)
    return shapes


def fabricate_official(model: torch.nn.Module, arch: str, with_text: bool) -> dict:
    """An official-format state dict with random values that should convert to ``model``."""
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone.bottom_up."):
            if value.is_floating_point():
                value = torch.randn(value.shape, generator=generator)
            state_dict[official_backbone_name(key)] = value.clone()
    for key, shape in official_head_shapes(arch, with_text).items():
        state_dict[key] = torch.randn(shape, generator=generator)
    return state_dict


@pytest.mark.parametrize("config", list(DETECTION_CONFIGS))
def test_official_detection_checkpoint_loads_strictly_into_its_config(config):
    arch, with_text = DETECTION_CONFIGS[config]
    model = instantiate(
        LazyConfig.load(os.path.join(REPO_ROOT, "configs/COCO", f"{config}.py")).model
    )
    official = fabricate_official(model, arch, with_text)
    # the read-off part has the official configs' sizes: attention pool at input_resolution 1344
    # (42×42 + 1 positions), context_length 13 = 5 class tokens + 8 contexts
    if with_text:
        embed_dim = 1024 if "r50" in config else 512
        assert official["backbone.attnpool.positional_embedding"].shape == (42 * 42 + 1, 2048)
        assert official["text_encoder.positional_embedding"].shape == (13, 512)
        assert official["contexts"].shape == (1, 8, 512)
        assert official["gamma"].shape == (embed_dim,)
    else:  # the official CLIPResNet has no attention pool and there is no text side
        assert not any(key.startswith(("backbone.attnpool.", "text_encoder.")) for key in official)

    conversion = convert_official_state_dict(official, source=config)
    assert conversion.table is (RETINANET_RULES if arch == "retinanet" else MASK_RCNN_RULES)
    check_matches_model(conversion.state_dict, model.state_dict(), config)
    model.load_state_dict(conversion.state_dict, strict=True)

    permuted = {k for k in official if k.rsplit(".", 1)[0] in RETINANET_OUTPUTS}
    assert set(conversion.transformed) == permuted
    assert len(permuted) == (4 if arch == "retinanet" else 0)
    assert conversion.names == {key: our_name(key, arch) for key in official}
    for key, new_key in conversion.names.items():
        expected = official[key]
        if key in permuted:
            expected = PermuteAnchors(num_ratios=3, num_scales=3)(expected)
            assert not torch.equal(conversion.state_dict[new_key], official[key])
        assert torch.equal(conversion.state_dict[new_key], expected), key


def mmdet_base_anchors(base_size, ratios, scales) -> torch.Tensor:
    """mmdet 2.x ``AnchorGenerator.gen_single_level_base_anchors`` (center offset 0): the
    per-location anchors, ratio-major."""
    h_ratios = torch.sqrt(torch.tensor(ratios))
    w_ratios = 1 / h_ratios
    scales = torch.tensor(scales)
    ws = (base_size * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (base_size * h_ratios[:, None] * scales[None, :]).view(-1)
    return torch.stack([-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs], dim=-1)


@pytest.mark.parametrize(
    "config, base_size, scales",
    [
        ("retinanet_clip_r50_fpn_1x_coco", 8, [4 * 2 ** (i / 3) for i in range(3)]),
        ("mask_rcnn_clip_r50_fpn_1x_coco", 4, [8]),
    ],
)
def test_anchor_order_maps_each_official_anchor_to_the_same_box_of_ours(config, base_size, scales):
    """The permutation, checked against the anchors themselves: our anchor d at the finest level
    is the box of official anchor ``official_order()[d]`` (for the RPN's single scale: the
    identity, so Mask R-CNN needs no permutation)."""
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/COCO", f"{config}.py"))
    generator = cfg.model.get("anchor_generator") or cfg.model.proposal_generator.anchor_generator
    ours = instantiate(generator).cell_anchors._buffers["0"]
    official = mmdet_base_anchors(base_size, [0.5, 1.0, 2.0], scales)
    order = PermuteAnchors(num_ratios=3, num_scales=len(scales)).official_order()
    torch.testing.assert_close(ours, official[order], rtol=1e-5, atol=1e-4)
    if len(scales) == 1:
        assert order == [0, 1, 2]
    else:
        assert not torch.allclose(ours, official, atol=1e-2)


def test_anchor_blocks_move_from_ratio_major_to_size_major():
    """A=9, K=2: the official channel of anchor (ratio r, scale s), class k holds 100r + 10s + k;
    it must arrive at detectron2's channel of anchor (size s, ratio r), class k."""
    ratios, scales, classes = 3, 3, 2
    code = torch.tensor(
        [
            100 * r + 10 * s + k
            for r in range(ratios)
            for s in range(scales)
            for k in range(classes)
        ],
        dtype=torch.float32,
    )
    official = {
        "bbox_head.retina_cls.weight": code.view(-1, 1, 1, 1).expand(-1, 4, 3, 3).clone(),
        "bbox_head.retina_cls.bias": code.clone(),
    }
    converted = convert_official_state_dict(official).state_dict
    weight, bias = converted["head.cls_score.weight"], converted["head.cls_score.bias"]
    for s in range(scales):
        for r in range(ratios):
            for k in range(classes):
                channel = (s * ratios + r) * classes + k
                assert bias[channel] == 100 * r + 10 * s + k
                assert torch.all(weight[channel] == 100 * r + 10 * s + k)
    # the box deltas (dx, dy, dw, dh) move by whole anchor blocks, in order
    deltas = torch.arange(9 * 4, dtype=torch.float32)
    moved = convert_official_state_dict({"bbox_head.retina_reg.bias": deltas}).state_dict
    assert moved["head.bbox_pred.bias"][4:8].tolist() == [12.0, 13.0, 14.0, 15.0]  # r 1, s 0


def test_anchor_permutation_rejects_a_tensor_of_another_anchor_count():
    with pytest.raises(OfficialCheckpointError, match=r"a.pth: bbox_head.retina_reg.bias \(35,\)"):
        convert_official_state_dict({"bbox_head.retina_reg.bias": torch.zeros(35)}, source="a.pth")


def test_each_detection_architecture_is_found_by_its_marker():
    zero = torch.zeros(1)
    assert find_rule_table({"backbone.conv1.weight": zero, "bbox_head.x": zero}) is RETINANET_RULES
    assert find_rule_table({"neck.x": zero, "roi_head.x": zero}) is MASK_RCNN_RULES


@pytest.mark.parametrize(
    "arch, official, unknown",
    [
        (
            "RetinaNet",
            {"bbox_head.retina_cls.bias": torch.zeros(9)},
            ["bbox_head.retina_iou.weight", "neck.fpn_convs.5.conv.weight"],
        ),
        (
            "Mask R-CNN",
            {"roi_head.bbox_head.fc_cls.bias": torch.zeros(3)},
            ["roi_head.bbox_head.shared_convs.0.conv.weight", "rpn_head.rpn_cls.scale"],
        ),
    ],
)
def test_unknown_detection_keys_are_an_error_naming_them(arch, official, unknown):
    state_dict = {**official, **{key: torch.zeros(1) for key in unknown}}
    with pytest.raises(OfficialCheckpointError) as error:
        convert_official_state_dict(state_dict, source="release.pth")
    message = str(error.value)
    assert message.startswith(f"release.pth: keys that no {arch} (mmdet) rule maps")
    assert "(2):\n" in message
    assert all(key in message for key in unknown)


# ----------------------------------------------------------------------------- tools/convert_clip.py


@pytest.fixture(scope="module")
def tiny_clip():
    """OpenAI CLIP's own model at toy widths (RN, 1 block per stage), random weights, eval."""
    torch.manual_seed(0)
    model = tiny_openai_clip().eval()
    with torch.no_grad():  # BN statistics away from 0/1, so that the test sees them
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def our_tiny_model():
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_tiny.py"))
    bottom_up = cfg.model.backbone.bottom_up
    bottom_up.image_encoder.update(
        layers=[1, 1, 1, 1], width=16, output_dim=32, heads=16 * 32 // 64, input_resolution=64
    )
    bottom_up.prompts.text_encoder.update(
        context_length=13, width=32, heads=2, layers=1, embed_dim=32
    )
    bottom_up.context_decoder.update(visual_dim=32)
    return instantiate(cfg.model).eval()


@pytest.mark.parametrize("archive", ["state_dict", "torchscript"])
def test_convert_clip_tool_round_trip_gives_clips_encoders(tmp_path, tiny_clip, archive):
    import clip

    image = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    tokens = clip.tokenize(["a cat", "sky"])
    src = str(tmp_path / f"clip_{archive}.pt")
    if archive == "state_dict":
        torch.save(tiny_clip.state_dict(), src)
    else:
        with warnings.catch_warnings():  # the tracer's notes on CLIP's shape checks
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.trace(tiny_clip, (image, tokens)), src)
    dst = str(tmp_path / "converted.pth")
    subprocess.run([sys.executable, "tools/convert_clip.py", src, dst], cwd=REPO_ROOT, check=True)

    ours = our_tiny_model()
    DenseCLIPCheckpointer(ours).load(dst)
    bottom_up = ours.backbone.bottom_up
    with torch.no_grad():
        expected_image = tiny_clip.encode_image(image)
        expected_text = tiny_clip.encode_text(tokens)
        actual_image = bottom_up.image_encoder(image)["global_embedding"]
        actual_text = bottom_up.prompts.text_encoder.encode_plain(tokens[:, :13])
    torch.testing.assert_close(actual_image, expected_image, rtol=0, atol=1e-5)
    torch.testing.assert_close(actual_text, expected_text, rtol=0, atol=1e-5)
