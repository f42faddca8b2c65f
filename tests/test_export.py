"""Specification of the deployment export (tools/export_model.py, denseclip.export) and of its
runtime (denseclip.export.ExportedPredictor, ONNX Runtime and TorchScript): the exported tiny
models predict what denseclip.Predictor predicts, at odd portrait and landscape sizes, with
the text encoder left out of the graph.

Each exported file is written once per module (exports take seconds); every test reads them.
"""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from test_inference import build, randomize_

from conftest import REPO_ROOT
from helpers import load_python_file

from denseclip import Predictor
from denseclip.checkpoint.deploy import DeployedClassPrompts
from denseclip.clip.transformer import _traceable_attention
from denseclip.export import export_model, graph_model
from denseclip.export import ExportedPredictor

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SEG_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_tiny.py")
BASELINE_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/fpn_clip_tiny.py")
RETINANET_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/retinanet_denseclip_tiny.py")
MASK_RCNN_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/mask_rcnn_denseclip_tiny.py")
VIT_RETINANET = "retinanet_denseclip_vit_tiny"
#: Odd sizes, neither a multiple of 32: portrait and landscape (detection: ≤ 128, the tiny
#: detectors' cropped positional embedding); segmentation also a side under 32 (padded to 32).
SEG_SIZES = [(101, 77), (70, 150), (20, 70)]
DET_SIZES = [(101, 77), (70, 118)]


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """H×W×3 uint8 BGR noise."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_checkpoint(model: torch.nn.Module, directory) -> str:
    path = os.path.join(str(directory), "model.pth")
    torch.save({"model": model.state_dict()}, path)
    return path


def detector(config, directory) -> str:
    """A tiny detector's checkpoint (config: a file or a loaded config) whose heads are random
    enough to detect things in noise (the initial classification prior keeps every score under
    the 0.05 threshold)."""
    cfg = LazyConfig.load(config) if isinstance(config, str) else config
    torch.manual_seed(0)
    model = randomize_(instantiate(cfg.model)).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if any(k in name for k in ("cls_score", "bbox_pred", "objectness", "anchor_deltas")):
                param.normal_(0, 0.5, generator=generator)
    return save_checkpoint(model, directory)


def assert_same_logits(expected: torch.Tensor, found: torch.Tensor) -> None:
    """Logits within 1e-4 of their range, the same argmax on ≥ 99.9 % of the pixels."""
    assert found.shape == expected.shape
    value_range = float(expected.max() - expected.min())
    assert float((found - expected).abs().max()) <= 1e-4 * value_range
    agreement = (found.argmax(0) == expected.argmax(0)).float().mean()
    assert agreement >= 0.999


def assert_same_detections(expected, found) -> None:
    """The same detections (classes equal; boxes, scores up to float rounding; masks on
    ≥ 99.9 % of the pixels), in any order among near-equal scores."""
    assert found.image_size == expected.image_size
    assert len(expected) > 0 and len(found) == len(expected)
    unused = set(range(len(found)))
    for i in range(len(expected)):
        match = [
            j
            for j in sorted(unused)
            if found.pred_classes[j] == expected.pred_classes[i]
            and abs(float(found.scores[j] - expected.scores[i])) < 1e-5
            and float((found.pred_boxes.tensor[j] - expected.pred_boxes.tensor[i]).abs().max())
            < 1e-3
        ]
        assert match, f"detection {i} of the model has no equal in the export"
        unused.remove(match[0])
        if expected.has("pred_masks"):
            same = found.pred_masks[match[0]] == expected.pred_masks[i]
            assert same.float().mean() >= 0.999


def export_cli(*args) -> str:
    return load_python_file("tools/export_model.py").main([str(a) for a in args])


# ----------------------------------------------------------------------------- segmentation


@pytest.fixture(scope="module")
def seg_checkpoint(tmp_path_factory):
    """A randomized tiny DenseCLIP (visible BatchNorms, γ = 1) saved as a checkpoint."""
    return save_checkpoint(build(LazyConfig.load(SEG_CONFIG)), tmp_path_factory.mktemp("seg"))


@pytest.fixture(scope="module")
def slide_config():
    """The tiny DenseCLIP with slide inference over 64² windows (stride 43)."""
    cfg = LazyConfig.load(SEG_CONFIG)
    cfg.model.update(test_mode="slide", crop_size=(64, 64), stride=(43, 43))
    return cfg


@pytest.fixture(scope="module")
def slide_onnx(slide_config, seg_checkpoint, tmp_path_factory):
    """(eager Predictor, ExportedPredictor of its ONNX export) in slide mode."""
    predictor = Predictor(slide_config, seg_checkpoint)
    directory = str(tmp_path_factory.mktemp("slide"))
    path, _ = export_model(predictor.model, "onnx", directory, verify=False)
    return predictor, ExportedPredictor(slide_config, path)


@pytest.fixture(scope="module")
def whole_torchscript(seg_checkpoint, tmp_path_factory):
    """(eager Predictor, ExportedPredictor) of the tiny DenseCLIP (whole inference) exported to
    TorchScript by the CLI."""
    output = tmp_path_factory.mktemp("ts")
    summary = export_cli(
        "--config-file",
        SEG_CONFIG,
        "--weights",
        seg_checkpoint,
        "--format",
        "torchscript",
        "--output",
        output,
    )
    assert "no text encoder" in summary
    path = str(output / "model.ts")
    return Predictor(SEG_CONFIG, seg_checkpoint), ExportedPredictor(SEG_CONFIG, path)


@pytest.fixture(scope="module")
def baseline_onnx(tmp_path_factory):
    """(eager Predictor, ONNX export) of the tiny CLIP + Semantic FPN baseline (whole)."""
    directory = tmp_path_factory.mktemp("baseline")
    checkpoint = save_checkpoint(build(LazyConfig.load(BASELINE_CONFIG)), directory)
    predictor = Predictor(BASELINE_CONFIG, checkpoint)
    path, _ = export_model(predictor.model, "onnx", str(directory), verify=False)
    return predictor, ExportedPredictor(BASELINE_CONFIG, path)


@pytest.mark.parametrize("size", SEG_SIZES)
@pytest.mark.parametrize(
    "exported_model, backend",
    [
        ("slide_onnx", "onnxruntime"),  # DenseCLIP, slide inference: 4 and 6 windows
        ("whole_torchscript", "torchscript"),  # DenseCLIP, whole inference
        ("baseline_onnx", "onnxruntime"),  # CLIP + Semantic FPN, whole inference
    ],
)
def test_exported_segmentor_predicts_what_the_predictor_predicts(
    request, exported_model, backend, size
):
    predictor, exported = request.getfixturevalue(exported_model)
    image = random_image(*size)
    assert exported.backend == backend
    assert_same_logits(predictor(image)["sem_seg"], exported(image)["sem_seg"])


def test_slide_inference_runs_the_windows_as_one_batch_of_the_graph(slide_onnx, monkeypatch):
    _, exported = slide_onnx
    seen = []
    encode = exported._encode
    monkeypatch.setattr(exported, "_encode", lambda x: seen.append(tuple(x.shape)) or encode(x))
    exported(random_image(101, 77))
    assert seen == [(4, 3, 64, 64)]  # 2 rows × 2 columns of 64² windows at stride 43


def test_exported_graph_holds_no_text_encoder(slide_onnx):
    predictor, exported = slide_onnx
    path = exported.graph.path
    state = predictor.model.state_dict()
    without_text = sum(
        t.numel() * t.element_size() for k, t in state.items() if ".text_encoder." not in k
    )
    text = sum(t.numel() * t.element_size() for k, t in state.items() if ".text_encoder." in k)
    assert text > without_text  # the tiny text encoder outweighs the rest: the check can fail
    assert os.path.getsize(path) < 1.1 * without_text


def test_pre_model_prompting_keeps_the_text_encoder_in_the_graph():
    config = os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_pre_model_tiny.py")
    prepared, text_in_graph = graph_model(instantiate(LazyConfig.load(config).model).eval())
    assert text_in_graph
    assert prepared.backbone.bottom_up.prompts.text_encoder is not None


def test_post_model_prompts_become_constants():
    prepared, text_in_graph = graph_model(build(LazyConfig.load(SEG_CONFIG)))
    assert not text_in_graph
    assert isinstance(prepared.backbone.bottom_up.prompts, DeployedClassPrompts)


@pytest.mark.parametrize("causal", [False, True])
def test_traced_clip_attention_equals_multihead_attention(causal):
    torch.manual_seed(0)
    attn = torch.nn.MultiheadAttention(16, 4).eval()
    x = torch.randn(7, 3, 16)  # L×N×D
    mask = torch.full((7, 7), float("-inf")).triu_(1) if causal else None
    with torch.no_grad():
        expected = attn(x, x, x, need_weights=False, attn_mask=mask)[0]
        found = _traceable_attention(attn, x, mask)
    torch.testing.assert_close(found, expected, rtol=1e-5, atol=1e-6)


def assert_graph_computes_the_windows_logits(model, path: str, sizes) -> None:
    """The ONNX file, run by ONNX Runtime on two random images of each size, gives the logits
    of the eager model's ``encode_decode`` of the normalised images (:func:`assert_same_logits`)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    for height, width in sizes:
        images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(2)) * 255
        with torch.no_grad():
            expected = model.encode_decode((images - model.pixel_mean) / model.pixel_std)
        (found,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
        for want, got in zip(expected, torch.from_numpy(found)):
            assert_same_logits(want, got)


def test_vit_segmentor_exports_for_every_size(tmp_path):
    # the ViT-B config at toy widths, 4 blocks; export_model verifies the graph at 123×81
    cfg = LazyConfig.load(
        os.path.join(REPO_ROOT, "configs/ADE20K/denseclip_fpn_vit-b_640x640_80k.py")
    )
    bottom_up = cfg.model.backbone.bottom_up
    bottom_up.image_encoder.update(
        width=32, layers=4, heads=2, out_indices=(0, 1, 2, 3), input_resolution=128, output_dim=64
    )
    bottom_up.prompts.text_encoder.update(width=64, heads=4, layers=1, embed_dim=64)
    bottom_up.context_decoder.update(width=32, num_heads=4, num_layers=1)
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    path, metadata = export_model(model, "onnx", str(tmp_path))
    assert len(metadata.class_names) == 150 and not metadata.text_encoder_in_graph
    assert_graph_computes_the_windows_logits(model, path, SEG_SIZES)


def test_swin_backbones_are_refused_with_the_reason(tmp_path):
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_swin_tiny.py"))
    with pytest.raises(ValueError, match="SwinTransformer.*only fits the traced image size"):
        export_model(instantiate(cfg.model).eval(), "onnx", str(tmp_path))


def test_exported_predictor_rejects_a_config_of_another_dataset(slide_onnx):
    path = slide_onnx[1].graph.path
    with pytest.raises(ValueError, match="predicts 5 classes.*test dataset has 3"):
        ExportedPredictor(RETINANET_CONFIG, path)


def test_demo_draws_the_predictions_of_an_exported_model(whole_torchscript, tmp_path):
    path = whole_torchscript[1].graph.path
    cv2.imwrite(str(tmp_path / "noise.png"), random_image(70, 150))
    load_python_file("tools/demo.py").main(
        [
            "--config-file",
            SEG_CONFIG,
            "--exported",
            path,
            "--input",
            str(tmp_path / "noise.png"),
            "--output",
            str(tmp_path / "pictures"),
        ]
    )
    assert cv2.imread(str(tmp_path / "pictures" / "noise.png")).shape == (70, 150, 3)


def test_benchmark_measures_onnxruntime_beside_the_eager_model(capsys):
    report = load_python_file("tools/benchmark.py").main(
        [
            "--config-file",
            SEG_CONFIG,
            "--baseline-config-file",
            BASELINE_CONFIG,
            "--size",
            "64",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--train-repeats",
            "0",
            "--no-memory",
            "--variants",
            "denseclip",
            "denseclip-onnxruntime",
        ]
    )
    assert set(report["latency_ms"]) == {"denseclip", "denseclip-onnxruntime"}
    assert "onnxruntime / ours (eager)" in report["ratios"]


# ----------------------------------------------------------------------------- detection


@pytest.fixture(scope="module")
def retinanet(tmp_path_factory):
    """(eager Predictor, {backend: ExportedPredictor}) of the tiny DenseCLIP RetinaNet."""
    directory = tmp_path_factory.mktemp("retinanet")
    predictor = Predictor(RETINANET_CONFIG, detector(RETINANET_CONFIG, directory))
    exported = {
        backend: ExportedPredictor(
            RETINANET_CONFIG, export_model(predictor.model, fmt, str(directory), verify=False)[0]
        )
        for backend, fmt in (("onnxruntime", "onnx"), ("torchscript", "torchscript"))
    }
    return predictor, exported


@pytest.fixture(scope="module")
def mask_rcnn(tmp_path_factory):
    """(eager Predictor, its ONNX export's ExportedPredictor) of the tiny DenseCLIP Mask R-CNN."""
    directory = tmp_path_factory.mktemp("mask_rcnn")
    predictor = Predictor(MASK_RCNN_CONFIG, detector(MASK_RCNN_CONFIG, directory))
    path, _ = export_model(predictor.model, "onnx", str(directory), verify=False)
    return predictor, ExportedPredictor(MASK_RCNN_CONFIG, path)


@pytest.mark.parametrize("size", DET_SIZES)
@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
def test_exported_retinanet_detects_what_the_predictor_detects(retinanet, backend, size):
    predictor, exported = retinanet
    exported = exported[backend]
    image = random_image(*size)
    assert exported.backend == backend
    assert_same_detections(predictor(image)["instances"], exported(image)["instances"])


@pytest.mark.parametrize("size", DET_SIZES)
def test_exported_mask_rcnn_detects_and_segments_what_the_predictor_does(mask_rcnn, size):
    predictor, exported = mask_rcnn
    image = random_image(*size)
    expected = predictor(image)["instances"]
    assert expected.has("pred_masks")
    assert_same_detections(expected, exported(image)["instances"])


def test_exported_detector_returns_no_detections_where_the_model_finds_none(retinanet):
    predictor, exported = retinanet
    nan = {"image": torch.full((3, 70, 90), float("nan")), "height": 70, "width": 90}
    with torch.no_grad():
        assert len(predictor.model([nan])[0]["instances"]) == 0
    assert len(exported["onnxruntime"].run(nan)["instances"]) == 0


def test_a_detection_sample_without_detections_is_refused(retinanet, tmp_path):
    predictor, _ = retinanet
    with pytest.raises(ValueError, match="sample image gives no detections.*--sample-image"):
        export_model(predictor.model, "onnx", str(tmp_path), torch.full((3, 64, 64), float("nan")))


def test_vit_detectors_without_a_fixed_input_size_are_refused_with_the_reason(
    load_tiny_config, tmp_path
):
    model = instantiate(load_tiny_config(VIT_RETINANET).model).eval()
    with pytest.raises(ValueError, match="CLIPViTDet.*only fit the traced.*square_pad=S"):
        export_model(model, "onnx", str(tmp_path))


def test_a_square_padded_vit_detector_exports_and_detects_what_the_predictor_does(
    load_tiny_config, tmp_path
):
    cfg = load_tiny_config(VIT_RETINANET)
    cfg.model.backbone.square_pad = 128  # every test image reaches the ViT as 128×128
    predictor = Predictor(cfg, detector(cfg, tmp_path))
    path, _ = export_model(predictor.model, "torchscript", str(tmp_path), verify=False)
    image = random_image(*DET_SIZES[1])  # not the traced size
    expected = predictor(image)["instances"]
    assert_same_detections(expected, ExportedPredictor(cfg, path)(image)["instances"])


def test_a_segmentor_traced_at_a_multiple_of_32_still_fits_odd_sizes(tmp_path):
    model = build(LazyConfig.load(SEG_CONFIG))
    sample = torch.rand(2, 3, 64, 96) * 255  # levels exactly 2× apart: resized all the same
    path, _ = export_model(model, "onnx", str(tmp_path), sample)  # verified at 123×81
    assert_graph_computes_the_windows_logits(model, path, SEG_SIZES)


def test_a_graph_that_fits_only_its_traced_size_is_not_kept(monkeypatch, tmp_path):
    # Without the tracing branches (encode_decode's padding, the head's resizes of its levels to
    # the finest one's size), a trace at 64×96 records neither, and the graph fails on sizes
    # that need them.
    model = build(LazyConfig.load(SEG_CONFIG))
    monkeypatch.setattr(torch.jit, "is_tracing", lambda: False)
    with pytest.raises(RuntimeError, match="does not generalise over image sizes"):
        export_model(model, "onnx", str(tmp_path), torch.rand(2, 3, 64, 96) * 255)
    assert not os.path.exists(tmp_path / "model.onnx")
