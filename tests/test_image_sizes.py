"""Every model type predicts on images of any size, with outputs at the input's size.

Model types (tests/tiny_models.py): semantic segmentation with the CLIP ResNet (DenseCLIP and
the CLIP baseline), the CLIP ViT pyramid (both), pre-model and language-only prompting, and the
any-backbone ImageNet ResNet and Swin; RetinaNet and Mask R-CNN (DenseCLIP and CLIP baselines).
Sizes go from 1×1 to panoramas of aspect 1:16 and 16:1 through the model's own inference path,
and up to 4000×3000 through :class:`denseclip.Predictor` (which applies the config's test
resize). Slide inference runs its windows ``slide_batch_size`` at a time, so that memory does
not grow with the image; the attention pool bounds its attention weights the same way.
"""

import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectron2.config import LazyCall as L
from detectron2.modeling import FPN
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead

from helpers import read_json
from tiny_models import DETECTION, SEGMENTATION, build_model, load_config

from denseclip import Predictor
from denseclip.clip import AttentionPool2d
from denseclip.data import KeepRatioResize, SYNTHETIC_CLASSES
from denseclip.meta_arch import sliding_windows

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = len(SYNTHETIC_CLASSES)
#: (height, width) through the model's own inference path: degenerate, odd, panoramas.
PANORAMAS = {"panorama_1to16": (16, 256), "panorama_16to1": (256, 16)}
SIZES = {"1x1": (1, 1), "33x65": (33, 65), **PANORAMAS}
#: Slide inference (the tiny configs' windows: 128² at stride 85) makes several windows of a
#: panorama; smaller images are one window, i.e. whole inference.
SLIDE_SIZES = PANORAMAS
#: Detection also gets a map larger than its attention pool's 4×4 positional-embedding grid.
DETECTION_SIZES = {**SIZES, "160x160": (160, 160)}


def random_image(height, width, seed=0):
    """3×H×W float image in 0..255."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), generator=generator).float()


@pytest.fixture(scope="module")
def model(request, load_tiny_config):
    """The tiny model of the model type ``request.param``, eval mode, built once per module;
    Mask R-CNN keeps its 10 best detections (not 100), which is enough to check their masks."""
    model = build_model(load_tiny_config, request.param)
    if hasattr(model, "roi_heads"):
        model.roi_heads.box_predictor.test_topk_per_image = 10
    return model


def check_instances(instances, height, width):
    assert instances.image_size == (height, width)
    boxes = instances.pred_boxes.tensor
    assert torch.isfinite(boxes).all()
    assert (boxes >= 0).all() and (boxes[:, 0::2] <= width).all()
    assert (boxes[:, 1::2] <= height).all()
    if instances.has("pred_masks"):
        assert instances.pred_masks.shape == (len(instances), height, width)


# ------------------------------------------------------------------ the model's own inference


@pytest.mark.parametrize(
    "test_mode, size",
    [("whole", size) for size in SIZES.values()]
    + [("slide", size) for size in SLIDE_SIZES.values()],
    ids=[f"whole-{name}" for name in SIZES] + [f"slide-{name}" for name in SLIDE_SIZES],
)
@pytest.mark.parametrize("model", SEGMENTATION, indirect=True)
def test_segmentation_logits_have_the_input_size(model, test_mode, size):
    height, width = size
    model.test_mode, model.crop_size, model.stride = test_mode, (128, 128), (85, 85)
    with torch.no_grad():
        logits = model([{"image": random_image(height, width)}])[0]["sem_seg"]
    assert logits.shape == (K, height, width)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("size", DETECTION_SIZES.values(), ids=DETECTION_SIZES.keys())
@pytest.mark.parametrize("model", DETECTION, indirect=True)
def test_detections_lie_in_an_image_of_the_input_size(model, size, monkeypatch):
    """Degenerate images give Instances of their size, never an error. Random weights score
    about 0.01, under the 0.05 threshold: at threshold 0 there are detections to check."""
    if hasattr(model, "roi_heads"):
        monkeypatch.setattr(model.roi_heads.box_predictor, "test_score_thresh", 0.0)
    else:
        monkeypatch.setattr(model, "test_score_thresh", 0.0)
    height, width = size
    with torch.no_grad():
        instances = model([{"image": random_image(height, width)}])[0]["instances"]
    assert len(instances) > 0
    check_instances(instances, height, width)


@pytest.mark.parametrize("model", SEGMENTATION, indirect=True)
def test_at_multiples_of_32_the_network_is_detectron2s_fpn_and_head_bit_for_bit(model, monkeypatch):
    """Where every level is twice the next, mmseg's sizes (the FPN's top-down path upsampled to
    each lateral's size, the head's levels resized to the finest one's, the logits to the
    window's) are detectron2's exact 2× steps: with or without ``pad_windows``, the logits equal
    those of detectron2's own ``FPN.forward`` and ``SemSegFPNHead`` (logits upsampled 4×)."""
    image = (random_image(64, 96)[None] - model.pixel_mean) / model.pixel_std
    with torch.no_grad():
        pyramid = FPN.forward(model.backbone, image)
        stock = SemSegFPNHead.layers(model.sem_seg_head, pyramid)  # eval: no dropout to skip
        stock = F.interpolate(stock, scale_factor=4, mode="bilinear", align_corners=False)
        for pad_windows in (False, True):
            monkeypatch.setattr(model, "pad_windows", pad_windows)
            assert torch.equal(model.encode_decode(image), stock), pad_windows


# ------------------------------------------------------------------ slide inference in batches


def slide_logits(model, image, slide_batch_size):
    """(logits, batch sizes seen by the backbone) of slide inference, 64² windows at stride 40."""
    model.test_mode, model.crop_size, model.stride = "slide", (64, 64), (40, 40)
    model.slide_batch_size = slide_batch_size
    seen = []
    handle = model.backbone.register_forward_pre_hook(lambda m, x: seen.append(x[0].shape[0]))
    try:
        with torch.no_grad():
            return model([{"image": image}])[0]["sem_seg"], seen
    finally:
        handle.remove()


@pytest.mark.parametrize("model", ["denseclip_resnet"], indirect=True)
def test_slide_inference_runs_the_windows_slide_batch_size_at_a_time(model):
    image = random_image(150, 170)
    assert len(sliding_windows(150, 170, (64, 64), (40, 40))) == 16  # 4 rows × 4 columns
    batched, seen = slide_logits(model, image, slide_batch_size=5)
    assert seen == [5, 5, 5, 1]
    at_once, seen = slide_logits(model, image, slide_batch_size=16)
    assert seen == [16]
    # the same windows, batched differently: equal up to float rounding (measured ≤ 6e-7)
    torch.testing.assert_close(batched, at_once, rtol=1e-5, atol=1e-5)
    assert torch.equal(batched.argmax(0), at_once.argmax(0))


def test_slide_batch_size_must_be_positive(load_tiny_config):
    from detectron2.config import instantiate

    cfg = load_tiny_config("denseclip_fpn_tiny")
    cfg.model.slide_batch_size = 0
    with pytest.raises(ValueError, match="slide_batch_size must be at least 1, got 0"):
        instantiate(cfg.model)


def test_a_stride_larger_than_the_crop_is_refused_before_it_leaves_pixels_out():
    with pytest.raises(ValueError, match=r"stride \(341, 341\) .* crop size \(128, 128\)"):
        sliding_windows(512, 512, (128, 128), (341, 341))


@pytest.mark.parametrize("model", ["denseclip_resnet"], indirect=True)
def test_slide_inference_on_4000x3000_holds_at_most_slide_batch_size_windows(model):
    """1645 windows of 128² at stride 85 (the tiny config's), 8 at a time. The network is
    replaced by a per-pixel function (one logit: the normalised red channel), so that 12
    Mpixels stay cheap: the windows, their batches and the averaging are the model's own."""
    height, width = 3000, 4000
    model.test_mode, model.crop_size, model.stride = "slide", (128, 128), (85, 85)
    model.slide_batch_size = 8
    batches = []

    def per_pixel_network(crops):
        batches.append(crops.shape[0])
        return crops[:, :1]

    red = ((torch.arange(height)[:, None] * 7 + torch.arange(width)) % 256).float()
    with pytest.MonkeyPatch.context() as patch, torch.no_grad():
        patch.setattr(model, "encode_decode", per_pixel_network)
        logits = model([{"image": red.expand(3, -1, -1)}])[0]["sem_seg"]
    windows = sliding_windows(height, width, (128, 128), (85, 85))
    assert len(windows) == 35 * 47 == sum(batches)
    assert max(batches) == 8
    assert logits.shape == (1, height, width)
    # every 7th row and 5th column: some pixels of every window, at a 35th of the cost
    sample = red[::7, ::5]
    expected = (sample - model.pixel_mean[0, 0, 0]) / model.pixel_std[0, 0, 0]
    torch.testing.assert_close(logits[0, ::7, ::5], expected, rtol=1e-6, atol=1e-5)


# ------------------------------------------------------------------ the attention pool's memory


def test_attention_pool_bounds_its_attention_weights_and_keeps_its_outputs(monkeypatch):
    """Queries are processed in chunks whose B×heads×queries×tokens weights hold at most
    ``max_attention_elements`` (as for a large image in whole mode), with the same outputs."""
    torch.manual_seed(0)
    pool = AttentionPool2d(spacial_dim=4, embed_dim=32, num_heads=4, output_dim=16)
    x = torch.randn(1, 32, 30, 40)  # 1 + 1200 tokens
    with torch.no_grad():
        whole = pool(x)
        sizes = []
        einsum = torch.einsum

        def spy(equation, *operands):
            out = einsum(equation, *operands)
            if equation.endswith("->bhlm"):
                sizes.append(out.numel())
            return out

        monkeypatch.setattr(torch, "einsum", spy)
        pool.max_attention_elements = 4 * 1201 * 100  # 100 queries a chunk
        chunked = pool(x)
    assert len(sizes) == 13 and max(sizes) <= pool.max_attention_elements
    for ours, reference in zip(chunked, whole):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_attention_pool_takes_one_chunk_at_the_papers_sizes():
    """RN50 (32 heads) on a COCO image (1333×800 → 42×25 + 1 tokens), 2 images a batch."""
    assert 2 * 32 * (42 * 25 + 1) ** 2 <= AttentionPool2d.max_attention_elements


# ------------------------------------------------------------------ Predictor: any image size

PREDICTOR_SIZES = {
    "1x1": (1, 1),
    "4000x3000": (3000, 4000),
    "panorama_1to16": (64, 1024),
    "panorama_16to1": (1024, 64),
}


@pytest.fixture(scope="module")
def predictor(request, load_tiny_config):
    """A Predictor of the model type ``request.param`` whose config resizes test images as the
    official ones (KeepRatioResize) to a tiny scale: long side ≤ 256, short side ≤ 64."""
    cfg = load_config(load_tiny_config, request.param)
    cfg.dataloader.test.mapper.augmentations = [L(KeepRatioResize)(scale=(256, 64))]
    # random weights: the 5 best detections whatever their score (5 masks pasted at 4000×3000)
    if "retinanet" in request.param:
        cfg.model.update(test_score_thresh=0.0, max_detections_per_image=5)
    elif "mask_rcnn" in request.param:
        cfg.model.roi_heads.box_predictor.update(test_score_thresh=0.0, test_topk_per_image=5)
    torch.manual_seed(0)
    return Predictor(cfg, weights="", input_format="RGB", device="cpu")


@pytest.mark.parametrize("size", PREDICTOR_SIZES.values(), ids=PREDICTOR_SIZES.keys())
@pytest.mark.parametrize(
    "predictor",
    ["denseclip_resnet", "retinanet_denseclip", "mask_rcnn_denseclip"],
    indirect=True,
)
def test_predictor_outputs_have_the_size_of_any_image(predictor, size):
    height, width = size
    outputs = predictor(np.full((height, width, 3), 128, np.uint8))
    if "sem_seg" in outputs:
        assert outputs["sem_seg"].shape == (K, height, width)
        assert torch.isfinite(outputs["sem_seg"][:, ::7, ::5]).all()
    else:
        check_instances(outputs["instances"], height, width)
        assert len(outputs["instances"]) == 5


# ------------------------------------------------------------------ detection beyond the grid


@pytest.fixture
def crop_pool():
    torch.manual_seed(0)
    return AttentionPool2d(spacial_dim=4, embed_dim=8, num_heads=2, pos_embed_resize="crop")


def official_crop(pool, height, width):
    """The official detection code's positional embedding: the top-left h×w of the grid."""
    pos = pool.positional_embedding
    grid = pos[1:].reshape(pool.spacial_dim, pool.spacial_dim, -1)[:height, :width]
    return torch.cat([pos[:1], grid.reshape(height * width, -1)])


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (4, 4)])
def test_crop_mode_crops_a_map_that_fits_exactly_as_the_official_code(crop_pool, size, caplog):
    with caplog.at_level(logging.WARNING):
        fitted = crop_pool.fitted_positional_embedding(*size)
    assert torch.equal(fitted, official_crop(crop_pool, *size))
    assert not caplog.records


@pytest.mark.parametrize("size", [(5, 5), (1, 8), (8, 1)])
def test_crop_mode_resizes_the_full_grid_bilinearly_for_a_larger_map(crop_pool, size):
    height, width = size
    pos = crop_pool.positional_embedding
    grid = pos[1:].reshape(4, 4, -1).permute(2, 0, 1)[None]
    resized = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    expected = torch.cat([pos[:1], resized[0].permute(1, 2, 0).reshape(height * width, -1)])
    torch.testing.assert_close(crop_pool.fitted_positional_embedding(*size), expected)


def test_crop_mode_warns_once_per_module_about_a_larger_map(crop_pool, caplog):
    with caplog.at_level(logging.WARNING, logger="denseclip.clip.resnet"):
        crop_pool.fitted_positional_embedding(5, 5)
        crop_pool.fitted_positional_embedding(8, 2)
        crop_pool.fitted_positional_embedding(4, 4)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "5×5" in message and "4×4" in message and "input_resolution" in message
    caplog.clear()
    other = AttentionPool2d(spacial_dim=4, embed_dim=8, num_heads=2, pos_embed_resize="crop")
    with caplog.at_level(logging.WARNING, logger="denseclip.clip.resnet"):
        other.fitted_positional_embedding(5, 5)
    assert len(caplog.records) == 1


@pytest.mark.parametrize("model", ["retinanet_denseclip", "mask_rcnn_denseclip"], indirect=True)
def test_detections_on_an_image_that_fits_are_those_of_the_official_crop(model, monkeypatch):
    """A 128×96 image (4×3 map, inside the 4×4 grid): bit-identical outputs."""
    if hasattr(model, "test_score_thresh"):  # RetinaNet: random weights score ≈ 0.01
        monkeypatch.setattr(model, "test_score_thresh", 0.0)
    image = random_image(128, 96)
    with torch.no_grad():
        ours = model([{"image": image}])[0]["instances"]
        pool = model.backbone.bottom_up.image_encoder.attnpool
        crop = lambda height, width: official_crop(pool, height, width)  # noqa: E731
        monkeypatch.setattr(pool, "fitted_positional_embedding", crop)
        official = model([{"image": image}])[0]["instances"]
    assert len(ours) == len(official) > 0
    assert torch.equal(ours.pred_boxes.tensor, official.pred_boxes.tensor)
    assert torch.equal(ours.scores, official.scores)
    assert torch.equal(ours.pred_classes, official.pred_classes)


def test_tiny_detector_trains_and_evaluates_on_160px_images(
    tmp_path, dataset_name, caplog, load_tiny_config
):
    """The tiny RetinaNet (input_resolution 128: a 4×4 grid) on a COCO-layout folder of 160×160
    images (5×5 maps), in process through denseclip.engine: 2 iterations, then COCO evaluation."""
    from detectron2.config import LazyConfig

    from denseclip import engine
    from denseclip.config import set_class_names
    from denseclip.data.catalog import dataset_class_names
    from denseclip.data import register_folder_dataset, write_synthetic_detection

    root = write_synthetic_detection(
        str(tmp_path / "shapes160"), num_train=2, num_val=2, image_size=(160, 160)
    )
    register_folder_dataset(dataset_name, root)
    cfg = load_config(load_tiny_config, "retinanet_denseclip")
    output_dir = str(tmp_path / "out")
    cfg = LazyConfig.apply_overrides(
        cfg,
        [
            f"dataloader.train.dataset.names={dataset_name}_train",
            f"dataloader.test.dataset.names={dataset_name}_val",
            "dataloader.train.total_batch_size=2",
            "train.max_iter=2",
            "train.eval_period=2",
            "train.checkpointer.period=2",
            "train.device=cpu",
            f"train.output_dir={output_dir}",
        ],
    )
    set_class_names(cfg.model, dataset_class_names(cfg.dataloader.train.dataset.names))
    with caplog.at_level(logging.WARNING, logger="denseclip.clip.resnet"):
        engine.do_train(cfg)
    assert any("5×5 feature map" in r.getMessage() for r in caplog.records)
    results = read_json(os.path.join(output_dir, "eval_results.json"))
    assert "AP" in results["bbox"]
