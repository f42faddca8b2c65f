"""Specification of ``DenseCLIPSemanticSegmentor`` (losses, slide / whole inference) and of the
config helpers, on the tiny synthetic configs."""

import pytest
import torch
import torch.nn.functional as F

from detectron2.config import instantiate
from detectron2.data import MetadataCatalog

from denseclip.config import set_class_names
from denseclip.data.catalog import dataset_class_names
from denseclip.data import SYNTHETIC_CLASSES
from denseclip.data.synthetic import generate_sample
from denseclip.losses import semantic_cross_entropy
from denseclip.meta_arch import DenseCLIPSemanticSegmentor, sliding_windows

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = len(SYNTHETIC_CLASSES)  # 5


@pytest.fixture
def model(tiny_config):
    """The tiny DenseCLIP model (configs/Synthetic/denseclip_fpn_tiny.py), seeded, with 64×64
    training crops (instead of 128) to keep the tests fast."""
    torch.manual_seed(0)
    tiny_config.model.crop_size = (64, 64)
    return instantiate(tiny_config.model)


@pytest.fixture
def baseline(load_tiny_config):
    """The tiny CLIP baseline (configs/Synthetic/fpn_clip_tiny.py), seeded, 64×64 crops."""
    config = load_tiny_config("fpn_clip_tiny")
    config.model.crop_size = (64, 64)
    torch.manual_seed(0)
    return instantiate(config.model)


def random_inputs(batch=2, height=64, width=64, seed=0, labels=True, **extra):
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(batch):
        item = {"image": torch.rand(3, height, width, generator=generator) * 255, **extra}
        if labels:
            item["sem_seg"] = torch.randint(0, K, (height, width), generator=generator)
            item["sem_seg"][: height // 4] = 255
        inputs.append(item)
    return inputs


def normalized(model, image):
    return ((image - model.pixel_mean) / model.pixel_std)[None]


class Capture:
    """Keeps the output of a module's last forward."""

    def __init__(self, module):
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.output = output


# ----------------------------------------------------------------------------- training


def test_tiny_config_builds_a_denseclip_segmentor(tiny_config):
    model = instantiate(tiny_config.model)
    assert isinstance(model, DenseCLIPSemanticSegmentor)
    assert model.backbone.bottom_up.prompts.class_names == list(SYNTHETIC_CLASSES)
    assert model.sem_seg_head.predictor.out_channels == K
    assert (model.tau, model.aux_loss_weight) == (0.07, 0.4)
    assert model.test_mode == "whole"


def test_training_returns_decode_and_pixel_text_losses(model):
    losses = model.train()(random_inputs())
    assert set(losses) == {"loss_sem_seg", "loss_aux_text"}
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses.values())


def padded_targets(inputs, height, width):
    """The inputs' labels in a height×width map of 255 (ignore), top-left aligned."""
    targets = torch.full((len(inputs), height, width), 255, dtype=torch.long)
    for target, item in zip(targets, inputs):
        target[: item["sem_seg"].shape[0], : item["sem_seg"].shape[1]] = item["sem_seg"]
    return targets


def test_aux_loss_is_04_times_cross_entropy_of_score_map_over_tau(model):
    """Images of 64×80 are padded to 64×96 (divisibility 32); the padded label pixels are
    ignored (255) and, with the official reduction, count in the mean."""
    bottom_up = Capture(model.backbone.bottom_up)
    inputs = random_inputs(height=64, width=80)
    losses = model.train()(inputs)
    score_map = bottom_up.output["score_map"]
    assert score_map.shape == (2, K, 2, 3)
    targets = padded_targets(inputs, 64, 96)
    expected = 0.4 * semantic_cross_entropy(score_map / 0.07, targets, 255, "all_pixels")
    torch.testing.assert_close(losses["loss_aux_text"], expected)


def test_decode_loss_is_the_heads_cross_entropy_on_padded_labels(model):
    logits = Capture(model.sem_seg_head.predictor)
    inputs = random_inputs(height=64, width=80)
    losses = model.train()(inputs)
    assert logits.output.shape == (2, K, 16, 24)
    expected = semantic_cross_entropy(logits.output, padded_targets(inputs, 64, 96), 255)
    torch.testing.assert_close(losses["loss_sem_seg"], expected)


def test_training_batches_are_padded_to_the_crop_size_with_ignored_labels(model):
    """As mmseg pads every training crop: a 64×80 batch trains as 128×128 with crop 128."""
    model.crop_size = (128, 128)
    logits, bottom_up = Capture(model.sem_seg_head.predictor), Capture(model.backbone.bottom_up)
    inputs = random_inputs(height=64, width=80)
    losses = model.train()(inputs)
    assert logits.output.shape == (2, K, 32, 32)
    targets = padded_targets(inputs, 128, 128)
    decode = semantic_cross_entropy(logits.output, targets, 255, "all_pixels")
    aux = 0.4 * semantic_cross_entropy(bottom_up.output["score_map"] / 0.07, targets, 255)
    torch.testing.assert_close(losses["loss_sem_seg"], decode)
    torch.testing.assert_close(losses["loss_aux_text"], aux)


def test_aux_loss_follows_tau_weight_and_reduction(tiny_config):
    tiny_config.model.update(
        tau=0.5, aux_loss_weight=2.0, aux_loss_reduction="valid_pixels", crop_size=(64, 64)
    )
    torch.manual_seed(0)
    model = instantiate(tiny_config.model).train()
    bottom_up = Capture(model.backbone.bottom_up)
    inputs = random_inputs()
    losses = model(inputs)
    targets = torch.stack([x["sem_seg"] for x in inputs])
    expected = 2.0 * semantic_cross_entropy(
        bottom_up.output["score_map"] / 0.5, targets, 255, "valid_pixels"
    )
    torch.testing.assert_close(losses["loss_aux_text"], expected)


def test_zero_aux_loss_weight_leaves_out_the_aux_loss(tiny_config):
    tiny_config.model.aux_loss_weight = 0.0
    model = instantiate(tiny_config.model).train()
    assert set(model(random_inputs())) == {"loss_sem_seg"}


def test_clip_baseline_trains_without_aux_loss(baseline):
    assert "score_map" not in baseline.backbone.bottom_up.output_shape()
    assert set(baseline.train()(random_inputs())) == {"loss_sem_seg"}


def test_unknown_test_mode_is_rejected(tiny_config):
    tiny_config.model.test_mode = "sliding"
    with pytest.raises(ValueError, match="test_mode"):
        instantiate(tiny_config.model)


def test_a_few_adamw_steps_on_one_synthetic_batch_lower_the_loss(model):
    batch = []
    for index in range(2):
        image, labels = generate_sample(0, 0, index, (64, 64))
        image = torch.as_tensor(image[:, :, ::-1].copy()).permute(2, 0, 1).float()  # BGR → RGB
        batch.append({"image": image, "sem_seg": torch.as_tensor(labels).long()})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)
    totals = []
    for _ in range(6):
        total = sum(model(batch).values())
        totals.append(total.item())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    assert totals[-1] < 0.9 * totals[0], totals


# ----------------------------------------------------------------------------- sliding windows


def test_sliding_windows_on_a_512_by_683_image():
    assert sliding_windows(512, 683, (512, 512), (341, 341)) == [
        (0, 512, 0, 512),
        (0, 512, 171, 683),
    ]


def test_sliding_windows_shift_the_last_row_and_column_back_to_the_border():
    assert sliding_windows(700, 600, (512, 512), (341, 341)) == [
        (0, 512, 0, 512),
        (0, 512, 88, 600),
        (188, 700, 0, 512),
        (188, 700, 88, 600),
    ]


def test_an_image_smaller_than_the_crop_is_one_window_covering_it():
    assert sliding_windows(300, 200, (512, 512), (341, 341)) == [(0, 300, 0, 200)]


def test_an_image_smaller_than_the_crop_in_one_dimension_keeps_the_other_grid():
    assert sliding_windows(300, 683, (512, 512), (341, 341)) == [
        (0, 300, 0, 512),
        (0, 300, 171, 683),
    ]


@pytest.mark.parametrize(
    "height, width, crop, stride",
    [
        (512, 683, 512, 341),
        (1000, 513, 512, 341),
        (97, 131, 32, 21),
        (64, 64, 64, 64),
        (5, 9, 4, 3),
    ],
)
def test_sliding_windows_cover_every_pixel_with_full_size_crops(height, width, crop, stride):
    windows = sliding_windows(height, width, (crop, crop), (stride, stride))
    covered = torch.zeros(height, width, dtype=torch.bool)
    for y1, y2, x1, x2 in windows:
        assert 0 <= y1 < y2 <= height and 0 <= x1 < x2 <= width
        assert (y2 - y1, x2 - x1) == (min(crop, height), min(crop, width))
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert len(set(windows)) == len(windows)


# ----------------------------------------------------------------------------- inference


def test_whole_inference_on_a_size_not_divisible_by_32(model):
    model.eval().test_mode = "whole"
    with torch.no_grad():
        outputs = model(random_inputs(batch=1, height=100, width=120, labels=False))
    assert len(outputs) == 1
    assert outputs[0]["sem_seg"].shape == (K, 100, 120)
    assert torch.isfinite(outputs[0]["sem_seg"]).all()


def mmseg_whole_logits(model, image: torch.Tensor, size) -> torch.Tensor:
    """mmseg's whole inference (FPN neck, FPNHead, ``resize`` to the image) restated on the
    model's layers: the FPN's top-down path adds each coarser lateral resized (nearest) to the
    finer one's size, each level's scale head (convs, 2× upsamplings) is resized bilinearly to
    the finest level's size before the sum, the classifier's logits bilinearly to ``size``.
    image: 1×3×H×W normalised → K×H×W."""
    fpn, head = model.backbone, model.sem_seg_head
    stages = fpn.bottom_up(image)
    # detectron2 keeps the lateral and output convs coarsest level first
    laterals = [conv(stages[f]) for conv, f in zip(fpn.lateral_convs, reversed(fpn.in_features))]
    for i in range(1, len(laterals)):
        coarser = F.interpolate(laterals[i - 1], size=laterals[i].shape[-2:], mode="nearest")
        laterals[i] = laterals[i] + coarser
    levels = [conv(x) for conv, x in zip(fpn.output_convs, laterals)][::-1]  # finest first
    output = head.scale_heads[0](levels[0])
    for scale_head, level in zip(head.scale_heads[1:], levels[1:]):
        upsampled = scale_head(level)
        output = output + F.interpolate(
            upsampled, size=output.shape[-2:], mode="bilinear", align_corners=False
        )
    logits = head.predictor(output)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0]


def test_the_network_runs_at_the_images_own_size_as_mmseg(model):
    """``pad_windows=False`` (the configs' default): a 100×120 image reaches the backbone as is
    (levels 25×30, 12×15, 6×7, 3×3: the avg-pool strides floor); the logits are mmseg's (:func:`mmseg_whole_logits`).
    """
    model.eval().test_mode = "whole"
    assert not model.pad_windows
    inputs = random_inputs(batch=1, height=100, width=120, labels=False)
    seen = Capture(model.backbone.bottom_up)
    with torch.no_grad():
        logits = model(inputs)[0]["sem_seg"]
        image = normalized(model, inputs[0]["image"])
        expected = mmseg_whole_logits(model, image, (100, 120))
    assert seen.output["res2"].shape[-2:] == (25, 30)  # 100×120 at stride 4, not 128×128
    assert [seen.output[f].shape[-2:] for f in ("res3", "res4", "res5")] == [
        (12, 15),
        (6, 7),
        (3, 3),
    ]
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-6 * float(expected.abs().max()))


def test_sides_shorter_than_32_are_padded_to_32_and_cropped_back(model):
    """The official encoders cannot take a side under 32 pixels: it is padded to 32 (zeros,
    the normalised mean), the other side is kept."""
    model.eval().test_mode = "whole"
    inputs = random_inputs(batch=1, height=20, width=70, labels=False)
    with torch.no_grad():
        logits = model(inputs)[0]["sem_seg"]
        padded = F.pad(normalized(model, inputs[0]["image"]), (0, 0, 0, 12))
        expected = model.sem_seg_head(model.backbone(padded), output_size=(32, 70))[0][0]
    assert torch.equal(logits, expected[:, :20])


def test_pad_windows_pads_to_a_multiple_of_32_as_detectron2(model):
    """``pad_windows=True``: the zero-padded 128×128 image through detectron2's head inference
    (logits upsampled 4×), cropped back to 100×120."""
    model.eval().test_mode = "whole"
    model.pad_windows = True
    inputs = random_inputs(batch=1, height=100, width=120, labels=False)
    with torch.no_grad():
        logits = model(inputs)[0]["sem_seg"]
        padded = F.pad(normalized(model, inputs[0]["image"]), (0, 8, 0, 28))
        expected = model.sem_seg_head(model.backbone(padded))[0][0, :, :100, :120]
    assert torch.equal(logits, expected)


def test_padded_and_exact_windows_differ_where_sides_are_not_multiples_of_32(model):
    model.eval().test_mode = "whole"
    inputs = random_inputs(batch=1, height=100, width=120, labels=False)
    with torch.no_grad():
        exact = model(inputs)[0]["sem_seg"]
        model.pad_windows = True
        padded = model(inputs)[0]["sem_seg"]
    assert (exact - padded).abs().max() > 1e-3


def test_slide_inference_averages_the_windows_logits(model):
    model.eval()
    model.test_mode, model.crop_size, model.stride = "slide", (64, 64), (48, 48)
    inputs = random_inputs(batch=1, height=64, width=112, labels=False)
    image = normalized(model, inputs[0]["image"])
    # windows (0, 64, 0, 64) and (0, 64, 48, 112): columns 48..63 are seen twice
    assert sliding_windows(64, 112, (64, 64), (48, 48)) == [(0, 64, 0, 64), (0, 64, 48, 112)]
    with torch.no_grad():
        logits = model(inputs)[0]["sem_seg"]
        left = model.sem_seg_head(model.backbone(image[..., :64]))[0][0]
        right = model.sem_seg_head(model.backbone(image[..., 48:]))[0][0]
    expected = torch.zeros(K, 64, 112)
    expected[:, :, :48] = left[:, :, :48]
    expected[:, :, 48:64] = (left[:, :, 48:] + right[:, :, :16]) / 2
    expected[:, :, 64:] = right[:, :, 16:]
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)


def test_slide_inference_with_crop_covering_the_image_equals_whole_inference(model):
    model.eval()
    inputs = random_inputs(batch=1, height=64, width=96, labels=False)
    with torch.no_grad():
        model.test_mode = "whole"
        whole = model(inputs)[0]["sem_seg"]
        model.test_mode, model.crop_size, model.stride = "slide", (128, 128), (85, 85)
        slide = model(inputs)[0]["sem_seg"]
    torch.testing.assert_close(slide, whole)


@pytest.mark.parametrize("test_mode", ["slide", "whole"])
def test_inference_output_has_the_height_and_width_of_the_input_dict(model, test_mode):
    model.eval()
    model.test_mode, model.crop_size, model.stride = test_mode, (64, 64), (48, 48)
    inputs = random_inputs(batch=2, height=64, width=96, labels=False)
    inputs[0].update(height=128, width=192)
    inputs[1].update(height=64, width=96)
    with torch.no_grad():
        outputs = model(inputs)
    assert outputs[0]["sem_seg"].shape == (K, 128, 192)
    assert outputs[1]["sem_seg"].shape == (K, 64, 96)


def test_inference_without_height_and_width_keeps_the_image_size(model):
    model.eval()
    model.test_mode, model.crop_size, model.stride = "slide", (64, 64), (48, 48)
    with torch.no_grad():
        outputs = model(random_inputs(batch=1, height=64, width=80, labels=False))
    assert outputs[0]["sem_seg"].shape == (K, 64, 80)


def test_inference_resizes_only_when_the_requested_size_differs(model, monkeypatch):
    requested_sizes = []
    interpolate = F.interpolate

    def spy(input, size=None, *args, **kwargs):
        if size is not None:
            requested_sizes.append(tuple(size))
        return interpolate(input, size, *args, **kwargs)

    monkeypatch.setattr(F, "interpolate", spy)
    model.eval()
    model.test_mode, model.crop_size, model.stride = "slide", (64, 64), (48, 48)
    inputs = random_inputs(batch=1, height=64, width=112, labels=False)
    with torch.no_grad():
        model([dict(inputs[0], height=64, width=112)])
        assert (64, 112) not in requested_sizes
        resized = model([dict(inputs[0], height=32, width=56)])[0]["sem_seg"]
        assert requested_sizes.count((32, 56)) == 1
        unresized = model(inputs)[0]["sem_seg"]
    expected = interpolate(unresized[None], size=(32, 56), mode="bilinear", align_corners=False)
    torch.testing.assert_close(resized, expected[0])


def test_baseline_inference_returns_logits(baseline):
    baseline.eval().test_mode = "whole"
    with torch.no_grad():
        outputs = baseline(random_inputs(batch=1, height=64, width=96, labels=False))
    assert outputs[0]["sem_seg"].shape == (K, 64, 96)


def test_eval_inference_computes_the_text_embeddings_once(model):
    calls = []
    model.backbone.bottom_up.prompts.text_encoder.register_forward_hook(
        lambda *args: calls.append(1)
    )
    model.eval()
    model.test_mode, model.crop_size, model.stride = "slide", (64, 64), (32, 32)
    with torch.no_grad():
        model(random_inputs(batch=2, height=64, width=128, labels=False))
        model(random_inputs(batch=1, height=96, width=64, labels=False))
    assert len(calls) == 1


# ----------------------------------------------------------------------------- config helpers


def test_set_class_names_sets_every_class_names_and_num_classes_field(tiny_config):
    names = ["cat", "dog"]
    assert set_class_names(tiny_config.model, names) == 2
    assert list(tiny_config.model.backbone.bottom_up.prompts.class_names) == names
    assert tiny_config.model.sem_seg_head.num_classes == 2
    model = instantiate(tiny_config.model)
    assert model.sem_seg_head.predictor.out_channels == 2
    assert model.backbone.bottom_up.output_shape()["res5"].channels == 16 * 32 + 2


def test_set_class_names_is_a_no_op_when_names_already_match(tiny_config):
    assert set_class_names(tiny_config.model, list(SYNTHETIC_CLASSES)) == 0


def test_dataset_class_names_reads_the_prompts_from_metadata(synthetic_datasets):
    assert dataset_class_names("synthetic_seg_train") == list(SYNTHETIC_CLASSES)
    assert dataset_class_names(["synthetic_seg_train", "synthetic_seg_val"]) == list(
        SYNTHETIC_CLASSES
    )


def test_dataset_class_names_prefers_class_prompts_over_stuff_classes():
    MetadataCatalog.get("_test_prompts_a").set(
        stuff_classes=["road, route", "sky"], class_prompts=["road", "sky"]
    )
    assert dataset_class_names("_test_prompts_a") == ["road", "sky"]


def test_dataset_class_names_is_none_without_class_metadata():
    assert dataset_class_names("_test_prompts_without_metadata") is None


def test_dataset_class_names_rejects_datasets_with_different_classes(synthetic_datasets):
    MetadataCatalog.get("_test_prompts_b").set(thing_classes=["person", "car"])
    with pytest.raises(ValueError, match="different classes"):
        dataset_class_names(["synthetic_seg_train", "_test_prompts_b"])
