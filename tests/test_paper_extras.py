"""The paper's extras beyond the official code: multi-scale + flip testing (MS mIoU), pre-model
prompting and the prompting ablation of Table 2, and any (ImageNet) backbone (§3.4, Table 5)."""

import importlib.util
import os
import pickle

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyConfig, instantiate

from conftest import REPO_ROOT
from denseclip.checkpoint import (
    IMAGENET_BACKBONE_PREFIX,
    TEXT_ENCODER_PREFIX,
    combine_imagenet_and_clip,
)
from denseclip.data.synthetic import generate_sample
from denseclip.engine import _with_tta
from denseclip.flops import InferenceFlopCountAnalysis
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

    half = F.interpolate(image[None].float(), size=(32, 48), mode="bilinear")[0]
    half = half.round().to(torch.uint8)
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


def test_without_the_tta_switch_evaluation_is_single_scale(tiny_config, segmentor):
    model, loader = _with_tta(tiny_config, segmentor)
    assert model is segmentor and loader is tiny_config.dataloader.test


def test_train_net_has_an_aug_test_flag():
    spec = importlib.util.spec_from_file_location(
        "train_net", os.path.join(REPO_ROOT, "train_net.py")
    )
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    args = train_net.argument_parser().parse_args(["--config-file", "x.py", "--aug-test"])
    assert args.aug_test


# ----------------------------------------------------------------------------- pre-model prompting


@pytest.fixture
def pre_model_config(load_tiny_config):
    return load_tiny_config("denseclip_fpn_pre_model_tiny")


def test_prompting_modes_of_the_tiny_configs(tiny_config, pre_model_config):
    assert build(tiny_config).backbone.bottom_up.prompting == "post"
    assert build(pre_model_config).backbone.bottom_up.prompting == "pre"
    tiny_config.model.backbone.bottom_up.context_decoder = None
    assert build(tiny_config).backbone.bottom_up.prompting == "none"


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


def test_imagenet_backbone_trains_and_gets_gradients_from_the_aux_loss(imagenet_config):
    model = build(imagenet_config)
    batch = synthetic_batch()
    model.train()
    losses = model(batch)
    losses["loss_aux_text"].backward()
    resnet = model.backbone.bottom_up.image_encoder.backbone
    for stage in ("stem", "res2", "res5"):
        grads = [p.grad for p in getattr(resnet, stage).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), stage
    totals = adamw_losses(model, batch)
    assert totals[-1] < 0.9 * totals[0], totals


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
