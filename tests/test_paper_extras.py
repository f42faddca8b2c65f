"""The paper's extras beyond the official code: multi-scale + flip testing (MS mIoU), pre-model
prompting and the prompting ablation of Table 2, and any (ImageNet) backbone (§3.4, Table 5)."""

import os
import pickle
import re

import numpy as np
import pytest
import torch
import torchvision

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

import mmcv_reference as mmcv
from conftest import REPO_ROOT
from helpers import (
    assert_same_results,
    eval_results,
    evaluate_in_process,
    load_python_file,
    run_python,
    run_train_net,
    tiny_overrides,
)
from denseclip.checkpoint import (
    IMAGENET_BACKBONE_PREFIX,
    TEXT_ENCODER_PREFIX,
    combine_imagenet_and_clip,
)
from denseclip.checkpoint import imagenet as imagenet_checkpoint
from denseclip.data.synthetic import generate_sample
from denseclip.engine.train import _with_tta
from denseclip.analysis.flops import InferenceFlopCountAnalysis
from denseclip.imagenet_backbone import ImageNetDenseEncoder
from denseclip.meta_arch import SemanticSegmentorWithTTA

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def synthetic_batch(size=64, count=2):
    """Synthetic images (RGB float, 0..255) with their labels."""
    batch = []
    for index in range(count):
        image, labels = generate_sample(0, 0, index, (size, size))
        image = torch.as_tensor(image[:, :, ::-1].copy()).permute(2, 0, 1).float()  # BGR → RGB
        batch.append({"image": image, "sem_seg": torch.as_tensor(labels).long()})
    return batch


def adamw_losses(model, batch, steps=6):
    """Total training loss before each of ``steps`` AdamW steps (lr 1e-3) on one batch."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)
    totals = []
    for _ in range(steps):
        total = sum(model(batch).values())
        totals.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    return totals


def build(config, crop=64, seed=0):
    torch.manual_seed(seed)
    config.model.crop_size = (crop, crop)
    return instantiate(config.model)


# ----------------------------------------------------------------------------- multi-scale + flip


@pytest.fixture
def segmentor(tiny_config):
    return build(tiny_config).eval()


def test_tta_target_sizes_follow_mmseg_multi_scale_flip_aug():
    tta = SemanticSegmentorWithTTA(torch.nn.Identity())
    # a 375×500 image: ratio r rescales it into (2048r, 512r), sizes rounded half up
    sizes = [tta.target_size(375, 500, r) for r in tta.scales]
    assert sizes == [(256, 341), (384, 512), (512, 683), (640, 853), (768, 1024), (896, 1195)]


def test_tta_averages_the_softmax_of_every_scale_and_flip_at_the_original_size(segmentor):
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    tta = SemanticSegmentorWithTTA(segmentor, scales=(0.5, 1.0), flip=True, base_size=(128, 64))
    output = tta([{"image": image, "height": 64, "width": 96}])[0]["sem_seg"]

    half = mmcv.imresize(image.permute(1, 2, 0).numpy(), (48, 32))  # mmcv: OpenCV bilinear
    half = torch.from_numpy(half).permute(2, 0, 1)
    expected = 0
    with torch.no_grad():
        for resized in (half, image):
            for flipped in (False, True):
                pass_image = resized.flip(-1) if flipped else resized
                inputs = [{"image": pass_image, "height": 64, "width": 96}]
                probs = segmentor(inputs)[0]["sem_seg"].softmax(dim=0)
                expected = expected + (probs.flip(-1) if flipped else probs)
    assert output.shape == (5, 64, 96)
    torch.testing.assert_close(output, expected / 4)


def test_tta_switch_wraps_the_model_and_removes_the_test_resize(tiny_config, segmentor):
    tiny_config.dataloader.test.mapper.augmentations = ["a resize"]
    config = LazyConfig.apply_overrides(tiny_config, ["tta.enabled=True", "tta.scales=[1.0]"])
    model, loader = _with_tta(config, segmentor)
    assert isinstance(model, SemanticSegmentorWithTTA) and model.model is segmentor
    assert model.scales == (1.0,) and model.flip
    assert loader.mapper.augmentations == []


def test_tta_base_size_is_the_test_resize_scale_as_in_mmseg(segmentor):
    """mmseg's MultiScaleFlipAug takes the test img_scale: (2048, 640) for the ViT-B recipe."""
    config = LazyConfig.load(
        os.path.join(REPO_ROOT, "configs/ADE20K/denseclip_fpn_vit-b_640x640_80k.py")
    )
    model, _ = _with_tta(LazyConfig.apply_overrides(config, ["tta.enabled=True"]), segmentor)
    assert model.base_size == (2048, 640)
    config = LazyConfig.apply_overrides(config, ["tta.enabled=True", "tta.base_size=[1024,256]"])
    assert _with_tta(config, segmentor)[0].base_size == (1024, 256)


def test_without_the_tta_switch_evaluation_is_single_scale(tiny_config, segmentor):
    model, loader = _with_tta(tiny_config, segmentor)
    assert model is segmentor and loader is tiny_config.dataloader.test


def test_train_net_has_an_aug_test_flag():
    train_net = load_python_file("train_net.py")
    args = train_net.argument_parser().parse_args(["--config-file", "x.py", "--aug-test"])
    assert args.aug_test


# ----------------------------------------------------------------------------- pre-model prompting


@pytest.fixture
def pre_model_config(load_tiny_config):
    return load_tiny_config("denseclip_fpn_pre_model_tiny")


@pytest.mark.parametrize(
    "name, mode",
    [
        ("denseclip_fpn_tiny", "post"),
        ("denseclip_fpn_pre_model_tiny", "pre"),
        ("denseclip_fpn_language_only_tiny", "none"),
    ],
)
def test_prompting_modes_of_the_tiny_configs(load_tiny_config, name, mode):
    assert build(load_tiny_config(name)).backbone.bottom_up.prompting == mode


@pytest.fixture(scope="module")
def set_prompting():
    return load_python_file("configs/common/models/prompting.py").set_prompting


@pytest.mark.parametrize("start", ["post", "pre", "none"])
@pytest.mark.parametrize("mode", ["post", "pre", "none"])
def test_prompting_switch_turns_any_mode_into_any_other(tiny_config, set_prompting, start, mode):
    sizes = lambda m: {} if m == "none" else {"width": 32, "num_layers": 1}  # noqa: E731
    bottom_up = tiny_config.model.backbone.bottom_up
    set_prompting(bottom_up, start, **sizes(start))
    set_prompting(bottom_up, mode, **sizes(mode))
    backbone = build(tiny_config).backbone.bottom_up.eval()
    assert backbone.prompting == mode
    with torch.no_grad():
        assert backbone(torch.randn(2, 3, 64, 64))["score_map"].shape == (2, 5, 2, 2)


@pytest.mark.parametrize("mode", ["post", "pre"])
def test_prompting_decoders_follow_a_later_change_of_the_joint_space(
    tiny_config, set_prompting, mode
):
    bottom_up = tiny_config.model.backbone.bottom_up
    set_prompting(bottom_up, mode, width=32, num_layers=1)
    bottom_up.prompts.text_encoder.update(width=32, heads=2, embed_dim=48)
    bottom_up.image_encoder.output_dim = 48
    backbone = build(tiny_config).backbone.bottom_up.eval()
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 64, 64))["text_embeddings"].shape[-1] == 48
    if mode == "pre":
        assert backbone.pre_model_prompting.context_width == 32


def test_prompting_switch_rejects_unknown_modes_and_sizes_without_a_decoder(
    tiny_config, set_prompting
):
    bottom_up = tiny_config.model.backbone.bottom_up
    with pytest.raises(ValueError, match=r"'both'.*expected one of \('post', 'pre', 'none'\)"):
        set_prompting(bottom_up, "both")
    with pytest.raises(ValueError, match=r"'none' has no decoder to size, got \['width'\]"):
        set_prompting(bottom_up, "none", width=32)


def test_pre_model_prompting_makes_image_dependent_text_embeddings(pre_model_config):
    backbone = build(pre_model_config).backbone.bottom_up.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        text = backbone(images)["text_embeddings"]
    assert text.shape == (2, 5, 64)
    assert not torch.allclose(text[0], text[1], atol=1e-4)


def test_pre_model_free_text_prompt_equal_to_a_class_gives_its_score_map(pre_model_config):
    backbone = build(pre_model_config).backbone.bottom_up.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        scores = backbone(images)["score_map"]
        prompt = backbone.prompts.class_names[3]
        torch.testing.assert_close(backbone.text_score_maps(images, [prompt])[:, 0], scores[:, 3])


def test_pre_model_prompting_replaces_the_learnable_contexts(pre_model_config):
    backbone = build(pre_model_config).backbone.bottom_up
    assert not backbone.prompts.contexts.requires_grad
    assert not hasattr(backbone, "gamma")


def test_pre_model_contexts_must_fit_the_text_encoder(pre_model_config):
    pre_model_config.model.backbone.bottom_up.pre_model_prompting.num_contexts = 4
    with pytest.raises(ValueError, match="4 contexts of width 64; the text encoder takes 8"):
        build(pre_model_config)


def test_a_few_steps_of_the_tiny_pre_model_config_lower_the_loss(pre_model_config):
    totals = adamw_losses(build(pre_model_config), synthetic_batch())
    assert totals[-1] < 0.9 * totals[0], totals


ABLATIONS = {  # Table 2: (GFLOPs at 1024², params M, tolerance)
    "language_only": (269, 46.5, 0.03),
    "post_model": (269, 50.2, 0.03),
    "pre_model": (368, 116.9, 0.10),
}


@pytest.fixture(scope="module")
def ablation_complexity():
    """Complexity of each Table 2 config at 1024×1024, counted once (~15 s each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = {}
    for name in ABLATIONS:
        path = f"configs/ADE20K/ablations/denseclip_fpn_res50_{name}_512x512_80k.py"
        model = instantiate(LazyConfig.load(os.path.join(REPO_ROOT, path)).model)
        results[name] = InferenceFlopCountAnalysis(model).complexity()
    torch.set_num_threads(threads)
    return results


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_flops_and_params_match_table_2(ablation_complexity, name):
    gflops, params_m, tolerance = ABLATIONS[name]
    complexity = ablation_complexity[name]
    assert complexity.gflops == pytest.approx(gflops, rel=tolerance)
    assert complexity.params_m == pytest.approx(params_m, rel=tolerance)


def test_pre_model_text_encoder_counts_at_inference(ablation_complexity):
    assert ablation_complexity["pre_model"].excluded_params == {}
    assert list(ablation_complexity["post_model"].excluded_params) == [
        "backbone.bottom_up.prompts.text_encoder"
    ]


# ----------------------------------------------------------------------------- any backbone


@pytest.fixture
def imagenet_config(load_tiny_config):
    return load_tiny_config("denseclip_fpn_imagenet_tiny")


@pytest.fixture
def swin_config(load_tiny_config):
    return load_tiny_config("denseclip_fpn_swin_tiny")


# tiny any-backbone config → backbone parts that the aux loss (on the stride-32 stage) reaches
ANY_BACKBONE_PARTS = {
    "denseclip_fpn_imagenet_tiny": ("stem", "res2", "res5"),
    "denseclip_fpn_swin_tiny": ("patch_embed", "layers.0", "layers.3", "norm3"),
}


@pytest.mark.parametrize("name", sorted(ANY_BACKBONE_PARTS))
def test_any_backbone_trains_and_gets_gradients_from_the_aux_loss(load_tiny_config, name):
    model = build(load_tiny_config(name))
    batch = synthetic_batch()
    model.train()
    losses = model(batch)
    losses["loss_aux_text"].backward()
    backbone = model.backbone.bottom_up.image_encoder.backbone
    for part in ANY_BACKBONE_PARTS[name]:
        grads = [p.grad for p in backbone.get_submodule(part).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part
    totals = adamw_losses(model, batch)
    assert totals[-1] < 0.9 * totals[0], totals


def test_swin_outputs_are_named_by_stride_like_resnet_stages(swin_config):
    encoder = build(swin_config).backbone.bottom_up.image_encoder
    assert encoder.stage_names == {"p0": "res2", "p1": "res3", "p2": "res4", "p3": "res5"}
    assert encoder.stage_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    with torch.no_grad():
        outputs = encoder(torch.randn(1, 3, 64, 96))
    shapes = {k: tuple(v.shape) for k, v in outputs.items()}
    assert shapes == {
        "res2": (1, 16, 16, 24),
        "res3": (1, 32, 8, 12),
        "res4": (1, 64, 4, 6),
        "res5": (1, 128, 2, 3),
        "global_embedding": (1, 64),
        "dense_embedding": (1, 64, 2, 3),
    }


class _FixedShapes(Backbone):
    """A Backbone stub with the given {name: stride} outputs (8 channels each)."""

    def __init__(self, strides):
        super().__init__()
        self._shapes = {n: ShapeSpec(channels=8, stride=s) for n, s in strides.items()}

    def output_shape(self):
        return self._shapes

    def forward(self, x):
        raise NotImplementedError("shapes only")


@pytest.mark.parametrize(
    "strides, message",
    [
        ({"stem": 4, "res2": 4, "res5": 32}, r"several outputs at one stride: \{'stem': 4"),
        ({"a": 12, "b": 32}, r"output 'a' has stride 12, expected a power of 2"),
        ({"c2": 4, "c4": 16}, r"no 'res5' output \(its outputs by stride: \['res2', 'res4'\]\)"),
    ],
)
def test_backbones_whose_outputs_cannot_be_named_by_stride_are_rejected(strides, message):
    with pytest.raises(ValueError, match=message):
        ImageNetDenseEncoder(_FixedShapes(strides), output_dim=16, heads=2)


def test_imagenet_and_clip_weights_combine_into_one_init_checkpoint(imagenet_config, tmp_path):
    source = build(imagenet_config, seed=1)
    resnet = source.backbone.bottom_up.image_encoder.backbone.state_dict()
    imagenet_file = tmp_path / "r50.pkl"  # as detectron2's convert-torchvision-to-d2.py writes
    with open(imagenet_file, "wb") as f:
        weights = {k: v.numpy() for k, v in resnet.items() if "num_batches" not in k}
        pickle.dump({"model": weights, "__author__": "torchvision", "matching_heuristics": True}, f)
    clip_model = {k: v for k, v in source.state_dict().items() if "bottom_up.prompts" in k}
    clip_model["backbone.bottom_up.image_encoder.attnpool.c_proj.bias"] = torch.zeros(64)

    model = build(imagenet_config, seed=2)
    combined = combine_imagenet_and_clip(model, str(imagenet_file), clip_model)
    missing = model.load_state_dict(combined, strict=False).missing_keys
    assert not [k for k in missing if "image_encoder.backbone" in k or "text_encoder" in k]
    assert all(k.startswith((IMAGENET_BACKBONE_PREFIX, TEXT_ENCODER_PREFIX)) for k in combined)
    for key, value in resnet.items():
        torch.testing.assert_close(model.state_dict()[IMAGENET_BACKBONE_PREFIX + key], value)


def msra_caffe2_names(resnet_state):
    """{MSRA Caffe2 name: detectron2 ResNet name} of a ResNet's weights, BN as affine scale and
    bias only (``_bn_s``, ``_bn_b``: Detectron's ImageNet ResNets have no BN statistics)."""
    branches = {
        "conv1": "branch2a",
        "conv2": "branch2b",
        "conv3": "branch2c",
        "shortcut": "branch1",
    }
    affine = {"weight": "s", "bias": "b"}
    names = {}
    for key in resnet_state:
        if key == "stem.conv1.weight":
            names["conv1_w"] = key
        elif key.startswith("stem.conv1.norm.") and key.split(".")[-1] in affine:
            names[f"res_conv1_bn_{affine[key.split('.')[-1]]}"] = key
        elif not key.startswith("stem."):
            stage, block, layer, *rest = key.split(".")
            prefix = f"{stage}_{block}_{branches[layer]}"
            if rest == ["weight"]:
                names[f"{prefix}_w"] = key
            elif rest[0] == "norm" and rest[1] in affine:
                names[f"{prefix}_bn_{affine[rest[1]]}"] = key
    return names


def test_msra_caffe2_resnet_without_bn_statistics_loads(imagenet_config, tmp_path):
    source = build(imagenet_config, seed=1).backbone.bottom_up.image_encoder.backbone
    state = source.state_dict()
    names = msra_caffe2_names(state)
    weights = {c2: state[d2].numpy() for c2, d2 in names.items()}
    weights.update(fc1000_w=np.zeros((1000, 256), np.float32), fc1000_b=np.zeros(1000, np.float32))
    msra_file = tmp_path / "R-50.pkl"
    with open(msra_file, "wb") as f:
        pickle.dump(weights, f)

    model = build(imagenet_config, seed=2)
    combined = combine_imagenet_and_clip(model, str(msra_file), {TEXT_ENCODER_PREFIX + "x": 1})
    assert len(names) == len([k for k in state if k.endswith(("weight", "bias"))])
    for d2 in names.values():
        torch.testing.assert_close(combined[IMAGENET_BACKBONE_PREFIX + d2], state[d2])
    running_var = combined[IMAGENET_BACKBONE_PREFIX + "res5.0.conv3.norm.running_var"]
    assert torch.equal(running_var, torch.ones_like(running_var))  # folded: identity statistics


def test_torchvision_resnet_release_loads_without_conversion(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    resnet.layer4[2].bn3.running_var.uniform_(0.5, 2.0)  # buffers that differ from the defaults
    release = resnet.state_dict()
    release_file = tmp_path / "resnet50-0676ba61.pth"
    torch.save(release, release_file)
    path = "configs/ADE20K/denseclip_fpn_r50_imagenet_512x512_80k.py"
    model = instantiate(LazyConfig.load(os.path.join(REPO_ROOT, path)).model)
    text = {k: v for k, v in model.state_dict().items() if k.startswith(TEXT_ENCODER_PREFIX)}

    # no error: every backbone weight came from the file, every file weight but fc went somewhere
    combined = combine_imagenet_and_clip(model, str(release_file), text)
    torchvision_to_detectron2 = {
        "conv1.weight": "stem.conv1.weight",
        "bn1.running_mean": "stem.conv1.norm.running_mean",
        "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
        "layer1.0.downsample.1.bias": "res2.0.shortcut.norm.bias",
        "layer3.5.conv2.weight": "res4.5.conv2.weight",
        "layer4.2.bn3.running_var": "res5.2.conv3.norm.running_var",
    }
    for source, target in torchvision_to_detectron2.items():
        assert torch.equal(combined[IMAGENET_BACKBONE_PREFIX + target], release[source]), target


def swin_release_state_dict(swin):
    """``swin``'s weights as microsoft/Swin-Transformer releases them for ImageNet: no per-output
    norms (detection/segmentation add them), a classifier norm and head, attention mask
    buffers."""
    weights = {k: v for k, v in swin.state_dict().items() if not re.match(r"norm\d\.", k)}
    width = swin.num_features[-1]
    weights.update(
        {
            "norm.weight": torch.rand(width),
            "norm.bias": torch.rand(width),
            "head.weight": torch.rand(1000, width),
            "head.bias": torch.rand(1000),
            "layers.0.blocks.1.attn_mask": torch.zeros(4, 16, 16),
        }
    )
    return weights


def test_swin_release_and_clip_weights_combine_into_one_init_checkpoint(swin_config, tmp_path):
    source = build(swin_config, seed=1)
    release = swin_release_state_dict(source.backbone.bottom_up.image_encoder.backbone)
    swin_file = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save({"model": release}, swin_file)
    clip_model = {k: v for k, v in source.state_dict().items() if "bottom_up.prompts" in k}

    model = build(swin_config, seed=2)
    combined = combine_imagenet_and_clip(model, str(swin_file), clip_model)
    model.load_state_dict(combined, strict=False)
    state = model.state_dict()
    loaded = [k for k in release if IMAGENET_BACKBONE_PREFIX + k in state]
    assert len(loaded) == len(release) - 5  # all but the classifier and the attention mask
    for key in loaded:
        torch.testing.assert_close(state[IMAGENET_BACKBONE_PREFIX + key], release[key])
    for i in range(4):  # the per-output norms start from LayerNorm's initialisation
        assert torch.equal(
            combined[f"{IMAGENET_BACKBONE_PREFIX}norm{i}.weight"], torch.ones(16 << i)
        )


def test_imagenet_file_missing_backbone_weights_is_rejected_with_the_file_and_keys(
    swin_config, tmp_path
):
    model = build(swin_config)
    release = swin_release_state_dict(model.backbone.bottom_up.image_encoder.backbone)
    del release["layers.2.blocks.0.mlp.fc1.weight"]
    swin_file = tmp_path / "swin_s.pth"
    torch.save({"model": release}, swin_file)
    message = r"swin_s.pth leaves 1 weights of the SwinTransformer backbone missing, e.g. \['layers"
    with pytest.raises(ValueError, match=message):
        combine_imagenet_and_clip(model, str(swin_file), {TEXT_ENCODER_PREFIX + "x": torch.ones(1)})


def test_imagenet_file_of_a_deeper_model_is_rejected(swin_config, tmp_path):
    model = build(swin_config)
    release = swin_release_state_dict(model.backbone.bottom_up.image_encoder.backbone)
    third_block = {  # as Swin-S's 18 blocks against the config's 2 in stage 3
        k.replace("layers.2.blocks.1.", "layers.2.blocks.2."): v
        for k, v in release.items()
        if k.startswith("layers.2.blocks.1.")
    }
    swin_file = tmp_path / "swin_s.pth"
    torch.save({"model": {**release, **third_block}}, swin_file)
    message = (
        rf"swin_s.pth has {len(third_block)} weights that the SwinTransformer backbone of the "
        r"config lacks, e.g. \['layers.2.blocks.2"
    )
    with pytest.raises(ValueError, match=message):
        combine_imagenet_and_clip(model, str(swin_file), {TEXT_ENCODER_PREFIX + "x": torch.ones(1)})


@pytest.mark.parametrize(
    "key, classifier",
    [
        ("fc.weight", True),  # torchvision
        ("stem.fc.bias", True),  # detectron2's convert-torchvision-to-d2.py
        ("fc1000_w", True),  # MSRA Caffe2
        ("head.weight", True),  # Swin
        ("norm.bias", True),  # Swin's final norm
        ("layers.0.blocks.1.attn_mask", True),
        ("norm3.weight", False),
        ("res5.2.conv3.norm.weight", False),
        ("layers.1.blocks.0.mlp.fc1.weight", False),
    ],
)
def test_classifier_entries_of_imagenet_files_are_told_apart(key, classifier):
    assert bool(imagenet_checkpoint._CLASSIFIER.search(key)) == classifier


# ----------------------------------------------------------------------------- command line

SWIN_TINY = "configs/Synthetic/denseclip_fpn_swin_tiny.py"


def test_combine_tool_writes_weights_that_train_net_starts_from(
    swin_config, tmp_path, datasets_dir
):
    source = build(swin_config, seed=1)
    release = swin_release_state_dict(source.backbone.bottom_up.image_encoder.backbone)
    text = {k: v for k, v in source.state_dict().items() if k.startswith(TEXT_ENCODER_PREFIX)}
    torch.save({"model": release}, tmp_path / "swin.pth")
    torch.save({"model": text}, tmp_path / "clip.pth")  # as tools/convert_clip.py writes
    combined_file = tmp_path / "combined" / "swin_clip.pth"
    paths = [tmp_path / "swin.pth", tmp_path / "clip.pth", combined_file]
    run = run_python(
        ["tools/combine_imagenet_clip.py", "--config-file", SWIN_TINY, *paths], datasets_dir
    )
    assert run.returncode == 0, run.describe()
    combined = torch.load(combined_file)["model"]
    torch.testing.assert_close(
        combined[IMAGENET_BACKBONE_PREFIX + "layers.3.blocks.1.mlp.fc2.weight"],
        release["layers.3.blocks.1.mlp.fc2.weight"],
    )
    for key, value in text.items():
        torch.testing.assert_close(combined[key], value)

    out = str(tmp_path / "out")
    overrides = tiny_overrides(out, max_iter=1, **{"train.init_checkpoint": combined_file})
    run = run_train_net(["--config-file", SWIN_TINY, *overrides], datasets_dir)
    assert run.returncode == 0, run.describe()
    assert f"Loading from {combined_file}" in run.output, run.describe()


def test_combine_tool_names_a_missing_imagenet_file(tmp_path, datasets_dir):
    clip_file = tmp_path / "clip.pth"
    torch.save({"model": {}}, clip_file)
    args = ["--config-file", SWIN_TINY, tmp_path / "nope.pth", clip_file, tmp_path / "out.pth"]
    run = run_python(["tools/combine_imagenet_clip.py", *args], datasets_dir)
    assert run.returncode == 2 and f"no file at '{tmp_path / 'nope.pth'}'" in run.output, run.tail()


VARIANT_CONFIGS = [
    "denseclip_fpn_language_only_tiny",
    "denseclip_fpn_pre_model_tiny",
    "denseclip_fpn_imagenet_tiny",
    "denseclip_fpn_swin_tiny",
]


@pytest.mark.parametrize("name", VARIANT_CONFIGS)
def test_each_paper_variant_trains_and_evaluates_from_the_command_line(
    name, tmp_path, datasets_dir
):
    out = str(tmp_path / "out")
    config = f"configs/Synthetic/{name}.py"
    run = run_train_net(["--config-file", config, *tiny_overrides(out, max_iter=2)], datasets_dir)
    assert run.returncode == 0, run.describe()
    assert os.path.isfile(os.path.join(out, "model_final.pth")), run.describe()
    results = eval_results(out)
    assert results is not None and 0 <= results["sem_seg"]["mIoU"] <= 100, run.describe()
    # what the command line reports is detectron2's own evaluation of the final weights
    expected = evaluate_in_process(
        config, tiny_overrides(out, max_iter=2), os.path.join(out, "model_final.pth")
    )
    assert_same_results(results["sem_seg"], expected["sem_seg"])
