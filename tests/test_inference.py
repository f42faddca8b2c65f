"""Specification of inference: the text-embedding cache, deploy export, Predictor and its
open-vocabulary score maps, BatchNorm folding, the demo CLI, the notebook and the benchmark."""

import copy
import importlib.util
import json
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import REPO_ROOT

from denseclip import Predictor
from denseclip.backbone import DenseCLIPBackbone
from denseclip.checkpoint import DenseCLIPCheckpointer
from denseclip.checkpoint.deploy import DeployedClassPrompts, deploy_class_prompts
from denseclip.data import SYNTHETIC_CLASSES
from denseclip.data.synthetic import generate_sample
from denseclip.inference.fuse import fold_batch_norms
from denseclip.prompting import ClassTextPrompts

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_DENSECLIP_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_tiny.py")
TINY_BASELINE_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/fpn_clip_tiny.py")
K = len(SYNTHETIC_CLASSES)


def load_tool(name: str):
    """A module of tools/ (not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(REPO_ROOT, "tools", name + ".py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters (so that folding them is visible) and
    γ = 1 (so that the context decoder visibly changes the text embeddings)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.normal_(1, 0.3, generator=generator)
                module.bias.normal_(0, 0.3, generator=generator)
            if isinstance(module, DenseCLIPBackbone):
                module.gamma.fill_(1.0)
    return model


def build(cfg, seed: int = 0) -> nn.Module:
    from detectron2.config import instantiate

    torch.manual_seed(seed)
    return randomize_(instantiate(cfg.model), seed).eval()


def logits(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model([{"image": image}])[0]["sem_seg"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A randomized tiny DenseCLIP saved as a detectron2 checkpoint: its path."""
    from detectron2.config import LazyConfig

    path = tmp_path_factory.mktemp("weights") / "model.pth"
    torch.save({"model": build(LazyConfig.load(TINY_DENSECLIP_CONFIG)).state_dict()}, path)
    return str(path)


@pytest.fixture(scope="module")
def image_bgr():
    """A 480×640 BGR synthetic landscape (uint8)."""
    return generate_sample(seed=3, split_index=1, index=0, image_size=(480, 640))[0]


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(TINY_DENSECLIP_CONFIG, checkpoint)


@pytest.fixture
def model(tiny_config):
    return build(tiny_config)


@pytest.fixture
def image():
    return torch.rand(3, 96, 128, generator=torch.Generator().manual_seed(0)) * 255


def prompts_of(model) -> ClassTextPrompts:
    return model.backbone.bottom_up.prompts


def recomputed(model, image) -> torch.Tensor:
    """The model's logits with the text encoder run afresh (prompts in training mode never
    cache; the text encoder has no dropout)."""
    prompts_of(model).train()
    try:
        return logits(model, image)
    finally:
        prompts_of(model).eval()


# ----------------------------------------------------------------------------- text cache


def test_cached_and_recomputed_text_give_identical_outputs(model, image):
    first, cached = logits(model, image), logits(model, image)
    assert torch.equal(first, cached)
    assert torch.equal(cached, recomputed(model, image))


def test_cache_is_refreshed_after_an_optimizer_step_in_eval_mode(model, image):
    before = logits(model, image)
    optimizer = torch.optim.AdamW([prompts_of(model).contexts], lr=0.5)
    prompts_of(model).contexts.grad = torch.randn_like(prompts_of(model).contexts)
    optimizer.step()
    after = logits(model, image)
    assert not torch.allclose(after, before)
    assert torch.equal(after, recomputed(model, image))


def test_cache_is_refreshed_after_a_training_iteration(model, image):
    logits(model, image)  # fills the cache
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.randint(K, (96, 128), generator=torch.Generator().manual_seed(0))
    sum(model([{"image": image, "sem_seg": labels}]).values()).backward()
    optimizer.step()
    model.eval()
    assert torch.equal(logits(model, image), recomputed(model, image))


def test_cache_is_refreshed_after_loading_weights(model, image, tiny_config, tmp_path):
    logits(model, image)  # fills the cache with the seed-0 weights
    other = build(tiny_config, seed=1)
    path = str(tmp_path / "other.pth")
    torch.save({"model": other.state_dict()}, path)
    DenseCLIPCheckpointer(model).load(path)
    assert torch.equal(logits(model, image), logits(other, image))


def test_class_embeddings_are_computed_in_float32_under_autocast(model):
    prompts = prompts_of(model)
    with torch.no_grad():
        expected = prompts().clone()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(prompts(), expected)
            assert torch.equal(prompts.encode(prompts.class_names), expected)


def test_training_runs_the_text_encoder_under_autocast(model):
    prompts = prompts_of(model).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert prompts().dtype == torch.bfloat16


def test_cache_computed_in_inference_mode_does_not_break_backward_later(model):
    backbone = model.backbone.bottom_up
    images = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        backbone(images)
    backbone(images)["score_map"].sum().backward()
    assert backbone.image_encoder.conv1.weight.grad is not None


def test_cache_is_refreshed_when_a_parameter_is_replaced_through_data(model):
    prompts = prompts_of(model)
    before = prompts().clone()
    projection = prompts.text_encoder.text_projection
    projection.data = projection.data * 2
    torch.testing.assert_close(prompts(), 2 * before)


# ----------------------------------------------------------------------------- deploy export


@pytest.fixture
def deploy_checkpoint(checkpoint, tmp_path):
    from detectron2.config import LazyConfig

    path = str(tmp_path / "deploy.pth")
    config = LazyConfig.load(TINY_DENSECLIP_CONFIG)
    load_tool("export_deploy").export_deploy(config, checkpoint, path)
    return path


def test_deploy_checkpoint_holds_text_embeddings_instead_of_the_text_encoder(deploy_checkpoint):
    state = torch.load(deploy_checkpoint, weights_only=True)["model"]
    assert not [k for k in state if ".text_encoder." in k or k.endswith(".contexts")]
    embed_dim = 64  # the tiny config's C
    assert state["backbone.bottom_up.prompts.deployed_embeddings"].shape == (1, K, embed_dim)


def test_deploy_checkpoint_predicts_identically(checkpoint, deploy_checkpoint, image_bgr):
    full = Predictor(TINY_DENSECLIP_CONFIG, checkpoint)
    deployed = Predictor(TINY_DENSECLIP_CONFIG, deploy_checkpoint)
    assert isinstance(prompts_of(deployed.model), DeployedClassPrompts)
    assert torch.equal(deployed(image_bgr)["sem_seg"], full(image_bgr)["sem_seg"])


def test_export_deploy_cli_writes_the_checkpoint(checkpoint, tmp_path, capsys):
    output = tmp_path / "deploy.pth"
    argv = [
        "--config-file",
        TINY_DENSECLIP_CONFIG,
        "--weights",
        checkpoint,
        "--output",
        str(output),
    ]
    load_tool("export_deploy").main(argv)
    assert output.is_file()
    assert "text encoder replaced by 5×64 text embeddings" in capsys.readouterr().out


def test_deploy_checkpoint_of_another_class_count_is_rejected(deploy_checkpoint, tiny_config):
    tiny_config.model.backbone.bottom_up.prompts.class_names = ["sky", "grass"]
    tiny_config.model.sem_seg_head.num_classes = 2
    model = build(tiny_config)
    with pytest.raises(
        ValueError, match=r"deployed_embeddings.*expected .*\(1, 2, 64\).*found \(1, 5, 64\)"
    ):
        DenseCLIPCheckpointer(model).load(deploy_checkpoint)


def test_deployed_prompts_cannot_train_nor_encode_free_text(model):
    deploy_class_prompts(model)
    prompts = prompts_of(model)
    assert not hasattr(prompts, "text_encoder") and "deployed_embeddings" in prompts.state_dict()
    with pytest.raises(RuntimeError, match="free-text prompts need the text encoder"):
        prompts.encode(["sky"])
    with pytest.raises(RuntimeError, match="inference only"):
        prompts.train()()


def test_export_of_a_baseline_is_rejected(checkpoint, tmp_path):
    from detectron2.config import LazyConfig

    with pytest.raises(ValueError, match="no DenseCLIP class prompts"):
        load_tool("export_deploy").export_deploy(
            LazyConfig.load(TINY_BASELINE_CONFIG), checkpoint, str(tmp_path / "x.pth")
        )


# ----------------------------------------------------------------------------- Predictor


def test_predictor_returns_logits_at_the_image_resolution(predictor, image_bgr):
    outputs = predictor(image_bgr)
    assert outputs["sem_seg"].shape == (K, 480, 640)


def test_predictor_equals_the_model_on_the_rgb_tensor(
    predictor, image_bgr, checkpoint, tiny_config
):
    model = build(tiny_config)
    DenseCLIPCheckpointer(model).load(checkpoint)
    rgb = torch.as_tensor(image_bgr[:, :, ::-1].astype("float32").transpose(2, 0, 1))
    torch.testing.assert_close(
        predictor(image_bgr)["sem_seg"], logits(model, rgb), rtol=1e-4, atol=1e-4
    )


def test_predictor_takes_rgb_images_with_input_format_rgb(predictor, checkpoint, image_bgr):
    rgb_predictor = Predictor(TINY_DENSECLIP_CONFIG, checkpoint, input_format="RGB")
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    assert torch.equal(rgb_predictor(rgb)["sem_seg"], predictor(image_bgr)["sem_seg"])


def test_predictor_runs_slide_inference(tiny_config, checkpoint, image_bgr):
    tiny_config.model.update(test_mode="slide", crop_size=(128, 128), stride=(85, 85))
    slide = Predictor(tiny_config, checkpoint)
    seen = []
    slide.model.backbone.register_forward_pre_hook(lambda m, x: seen.append(tuple(x[0].shape)))
    assert slide(image_bgr)["sem_seg"].shape == (K, 480, 640)
    # 6 rows × 8 columns of windows, slide_batch_size (8) at a time
    assert seen == [(8, 3, 128, 128)] * 6


def test_predictor_applies_the_test_time_resize(tiny_config, checkpoint, image_bgr):
    from detectron2.config import LazyCall as L
    from detectron2.data import transforms as T

    tiny_config.dataloader.test.mapper.augmentations = [
        L(T.ResizeShortestEdge)(short_edge_length=128)
    ]
    resized = Predictor(tiny_config, checkpoint)
    seen = []
    resized.model.backbone.register_forward_pre_hook(lambda m, x: seen.append(x[0].shape[-2:]))
    assert resized(image_bgr)["sem_seg"].shape == (K, 480, 640)
    assert tuple(seen[0]) == (128, 171)  # 480×640 → 128×171, run at its own size (mmseg)


def test_predictor_folds_batch_norms_without_changing_predictions(checkpoint, predictor, image_bgr):
    unfolded = Predictor(TINY_DENSECLIP_CONFIG, checkpoint, fold_bn=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in unfolded.model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in predictor.model.modules())
    torch.testing.assert_close(
        predictor(image_bgr)["sem_seg"], unfolded(image_bgr)["sem_seg"], rtol=1e-4, atol=1e-4
    )


def test_predictor_metadata_names_the_classes(predictor):
    assert list(predictor.metadata.stuff_classes) == list(SYNTHETIC_CLASSES)


@pytest.mark.parametrize("bad", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 4), np.uint8)])
def test_predictor_rejects_images_that_are_not_hxwx3(predictor, bad):
    with pytest.raises(ValueError, match=r"image: expected an H×W×3 numpy array in BGR order"):
        predictor(bad)


def test_predictor_rejects_an_unknown_input_format(checkpoint):
    with pytest.raises(ValueError, match="input_format: expected one of"):
        Predictor(TINY_DENSECLIP_CONFIG, checkpoint, input_format="YUV")


def test_predictor_names_a_missing_weights_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        Predictor(TINY_DENSECLIP_CONFIG, str(tmp_path / "missing.pth"))


# ----------------------------------------------------------------------------- score maps


def test_score_maps_have_one_map_per_prompt_at_the_image_resolution(predictor, image_bgr):
    maps = predictor.score_maps(image_bgr, ["red circle", "blue sky", "green"])
    assert maps.shape == (3, 480, 640)
    assert maps.abs().max() <= 1.0
    assert maps.std() > 0


def test_score_map_of_a_class_name_is_the_backbones_score_map(predictor, image_bgr):
    index = SYNTHETIC_CLASSES.index("circle")
    rgb = torch.as_tensor(image_bgr[:, :, ::-1].astype("float32").transpose(2, 0, 1))
    with torch.no_grad():
        images = predictor.model.preprocess_image([{"image": rgb}])  # 480×640: no padding
        scores = predictor.model.backbone.bottom_up(images.tensor)["score_map"][
            :, index : index + 1
        ]
    expected = F.interpolate(scores, size=(480, 640), mode="bilinear", align_corners=False)[0, 0]
    maps = predictor.score_maps(image_bgr, ["circle", "red circle"])
    torch.testing.assert_close(maps[0], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(maps[1], expected, atol=1e-3)


def test_score_map_of_a_prompt_does_not_depend_on_the_other_prompts(predictor, image_bgr):
    alone = predictor.score_maps(image_bgr, "red circle")
    together = predictor.score_maps(image_bgr, ["sky", "red circle", "big square"])
    torch.testing.assert_close(together[1], alone[0], rtol=1e-5, atol=1e-5)


def test_class_score_maps_are_the_score_maps_of_the_class_names(predictor, image_bgr):
    expected = predictor.score_maps(image_bgr, list(SYNTHETIC_CLASSES))
    torch.testing.assert_close(
        predictor.class_score_maps(image_bgr), expected, rtol=1e-5, atol=1e-5
    )
    assert predictor.has_score_maps and predictor.encodes_free_text


def test_deploy_checkpoint_gives_class_score_maps_but_encodes_no_free_text(
    predictor, deploy_checkpoint, image_bgr
):
    deployed = Predictor(TINY_DENSECLIP_CONFIG, deploy_checkpoint)
    assert deployed.has_score_maps and not deployed.encodes_free_text
    torch.testing.assert_close(
        deployed.class_score_maps(image_bgr), predictor.class_score_maps(image_bgr)
    )


def test_demo_tool_refuses_free_text_score_maps_of_a_deploy_checkpoint(
    deploy_checkpoint, tmp_path, capsys
):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    argv = ["--config-file", TINY_DENSECLIP_CONFIG, "--weights", deploy_checkpoint]
    argv += ["--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        load_tool("demo").main(argv + ["--score-maps", "red"])
    assert "--score-maps red: free text needs the text encoder" in capsys.readouterr().err


def test_score_maps_reject_prompts_longer_than_the_class_slot(predictor, image_bgr):
    with pytest.raises(ValueError, match="has 5 BPE tokens, more than the 3"):
        predictor.score_maps(image_bgr, ["a very long prompt indeed"])


def test_score_maps_need_a_denseclip_model(image_bgr):
    baseline = Predictor(TINY_BASELINE_CONFIG, "")
    with pytest.raises(ValueError, match="score_maps needs a DenseCLIP model"):
        baseline.score_maps(image_bgr, ["sky"])
    assert not baseline.has_score_maps and not baseline.encodes_free_text


# ----------------------------------------------------------------------------- BN folding


@pytest.mark.parametrize("config", ["denseclip_fpn_tiny", "fpn_clip_tiny"])
def test_folding_batch_norms_keeps_the_outputs(load_tiny_config, config, image):
    model = build(load_tiny_config(config))
    folded = copy.deepcopy(model)
    assert fold_batch_norms(folded) == 26  # stem 3 + 4 bottlenecks × 4 + 7 head convs
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    torch.testing.assert_close(logits(folded, image), logits(model, image), rtol=1e-4, atol=1e-5)


def test_folding_a_frozen_batch_norm_of_a_detectron2_conv():
    from detectron2.layers import Conv2d, FrozenBatchNorm2d

    torch.manual_seed(0)
    norm = FrozenBatchNorm2d(4)
    norm.weight.uniform_(0.5, 2)
    norm.running_mean.normal_()
    conv = Conv2d(3, 4, 3, padding=1, bias=False, norm=norm, activation=F.relu)
    x = torch.randn(2, 3, 8, 8)
    expected = conv(x)
    assert fold_batch_norms(conv) == 1
    assert conv.norm is None
    torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-6)


def test_folding_needs_eval_mode(model):
    with pytest.raises(ValueError, match="BatchNorm folding needs eval mode"):
        fold_batch_norms(model.train())


# ----------------------------------------------------------------------------- demo CLI


def test_demo_writes_one_picture_per_image(checkpoint, tmp_path, image_bgr):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), image_bgr)
    cv2.imwrite(str(images / "b.jpg"), image_bgr[:200, :300])
    output = tmp_path / "out"
    argv = ["--config-file", TINY_DENSECLIP_CONFIG, "--weights", checkpoint]
    load_tool("demo").main(
        argv + ["--input", str(images / "*.png"), str(images / "b.jpg"), "--output", str(output)]
    )
    pictures = sorted(os.listdir(output))
    assert pictures == ["a.png", "b.png"]
    assert cv2.imread(str(output / "a.png")).shape == (480, 640, 3)
    assert cv2.imread(str(output / "b.png")).shape == (200, 300, 3)


def test_demo_names_an_input_without_images(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--input '.*nothing\*\.png': expected an image"):
        load_tool("demo").expand_inputs([str(tmp_path / "nothing*.png")])


def test_demo_refuses_two_images_drawn_to_the_same_picture(tmp_path):
    with pytest.raises(ValueError, match="would both be drawn to"):
        load_tool("demo").output_paths(["x/a.png", "y/a.jpg"], str(tmp_path))


# ----------------------------------------------------------------------------- notebook


def test_inference_notebook_executes(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("DENSECLIP_WEIGHTS", str(tmp_path / "none.pth"))  # trains in the notebook
    monkeypatch.setenv("DENSECLIP_NOTEBOOK_OUTPUT", str(tmp_path / "notebook"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(os.path.join(REPO_ROOT, "notebooks", "inference.ipynb"), as_version=4)
    NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3
    assert (tmp_path / "notebook" / "model_final.pth").is_file()


# ----------------------------------------------------------------------------- benchmark


def test_benchmark_smoke_run_prints_its_table(capsys):
    variants = ["denseclip", "denseclip-official", "baseline"]
    argv = "--size 128 --repeats 2 --warmup 1 --train-repeats 1 --threads 1 --variants "
    argv += " ".join(variants)
    configs = [
        "--config-file",
        TINY_DENSECLIP_CONFIG,
        "--baseline-config-file",
        TINY_BASELINE_CONFIG,
    ]
    report = load_tool("benchmark").main(configs + argv.split())
    printed = capsys.readouterr().out
    for text in variants + ["cached / baseline", "official / ours", "training step"]:
        assert text in printed
    assert json.loads(printed.strip().splitlines()[-1]) == json.loads(json.dumps(report))
    assert set(report["latency_ms"]) == set(report["memory_mb"]) == set(variants)
    memory = report["memory_mb"]
    assert memory["denseclip"]["model_mb"] > memory["baseline"]["model_mb"] > 0
    assert all(m["peak_mb"] > 0 for m in memory.values())
