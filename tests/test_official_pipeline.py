"""From an image file to the final outputs, our configs follow the official pipelines.

The official side is re-stated independently: the data pipelines in ``mmcv_reference.py``
(mmcv 1.3.17, mmseg 0.19, mmdet 2.17), the segmentation forward in ``official_reference.py``.
Our side is what ``train_net.py`` runs: detectron2's ``DatasetMapper`` built from the
official-recipe data configs (``configs/common/data/ade20k_sem_seg.py``, ``coco_instance.py``)
and our model built from a LazyConfig with weights converted from an official-format release file
(written with mmcv's checkpoint structure, read by ``load_official_checkpoint``).

The end-to-end segmentation tests run the recipe's test pipeline at a quarter of its size
(resize into (512, 128) instead of (2048, 512), slide windows 128 / stride 85 instead of 512 /
341) to stay fast: the same code at other numbers. Run with ``-s`` to see each case's agreement.
"""

import copy
import os

import cv2
import mmcv_reference as mm
import numpy as np
import official_reference as ref
import pytest
import test_official_equivalence as eq
import torch
from conftest import REPO_ROOT

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate
from detectron2.data.detection_utils import read_image
from detectron2.modeling import Backbone
from detectron2.structures import BoxMode

from denseclip.checkpoint import (
    OfficialCheckpointError,
    check_class_names,
    check_matches_model,
    convert_official_state_dict,
    load_official_checkpoint,
)
from denseclip.data import PhotoMetricDistortion, PhotoMetricTransform
from denseclip.meta_arch import SemanticSegmentorWithTTA

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SCALE = (512, 128)  # the recipe's (2048, 512) / 4
SLIDE = {"mode": "slide", "crop_size": (128, 128), "stride": (85, 85)}  # 512 / 341, over 4
MIN_IDENTICAL = 0.999  # fraction of identical label-map pixels the issue asks for


def data_config(name: str):
    return LazyConfig.load(os.path.join(REPO_ROOT, "configs", "common", "data", f"{name}.py"))


def load_synthetic_config(name: str):
    return LazyConfig.load(os.path.join(REPO_ROOT, "configs", "Synthetic", f"{name}.py"))


def photo(height: int, width: int, seed: int) -> np.ndarray:
    """A BGR uint8 picture with smooth gradients, discs and sensor noise (JPEG-friendly, with
    edges that resizing filters treat differently)."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    waves = [np.sin(6 * x + 6 * rng.rand()), np.cos(5 * y + 6 * rng.rand()), np.sin(4 * (x + y))]
    image = np.stack(waves, -1) * 100 + 128
    for _ in range(8):
        center = (int(rng.randint(width)), int(rng.randint(height)))
        radius = int(rng.randint(3, max(4, max(height, width) // 4)))
        cv2.circle(image, center, radius, [float(v) for v in rng.randint(0, 256, 3)], -1)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def write_image(path, image: np.ndarray) -> str:
    assert cv2.imwrite(str(path), image)
    return str(path)


# ----------------------------------------------------------------------------- decoding


def test_pil_and_opencv_decode_our_jpeg_and_png_files_identically(tmp_path):
    """detectron2 reads images with PIL, mmcv with OpenCV: on this stack both decode a JPEG
    (libjpeg-turbo, 4:2:0) and a PNG to the same pixels, so the decoders add no difference."""
    image = photo(61, 83, seed=0)
    for name in ("photo.jpg", "photo.png"):
        path = write_image(tmp_path / name, image)
        assert np.array_equal(read_image(path, format="BGR"), mm.imread_color(path)), name


# ----------------------------------------------------------------------------- ADE20K training


@pytest.fixture(scope="module")
def ade20k_train_mapper():
    return instantiate(data_config("ade20k_sem_seg").dataloader.train.mapper)


def labels_with_a_dominant_class(height: int, width: int, seed: int) -> np.ndarray:
    """Class 3 everywhere but a few discs of classes 0..2 and 255: most crops fail the 0.75
    category check, so the crop is redrawn (up to 10 times)."""
    rng = np.random.RandomState(seed)
    labels = np.full((height, width), 3, np.uint8)
    for value in (0, 1, 2, 255):
        center = (int(rng.randint(width)), int(rng.randint(height)))
        cv2.circle(labels, center, int(rng.randint(5, 30)), value, -1)
    return labels


def training_sample(tmp_path, seed: int, labels: np.ndarray):
    image = photo(*labels.shape, seed=seed)
    image_path = write_image(tmp_path / f"train_{seed}.jpg", image)
    label_path = str(tmp_path / f"train_{seed}.png")
    cv2.imwrite(label_path, labels)
    record = {"file_name": image_path, "sem_seg_file_name": label_path}
    return record, image_path, labels


def official_training_sample(image_path: str, labels: np.ndarray, seed: int):
    """mmseg's pipeline after the same ``np.random.seed``: (BGR crop, label crop)."""
    np.random.seed(seed)
    results = {"img": mm.imread_color(image_path), "gt_semantic_seg": labels}
    results = mm.compose(mm.ade20k_train_pipeline(), results)
    return results["img"], results["gt_semantic_seg"]


@pytest.mark.parametrize("seed", range(6))
def test_ade20k_training_samples_equal_mmseg_for_the_same_seed(tmp_path, ade20k_train_mapper, seed):
    """The recipe's train mapper (random resize, category-checked crop, flip, photometric
    distortion) gives mmseg's crop pixel for pixel after the same ``np.random.seed``: every random
    draw is made in mmseg's order. Labels where one class dominates make crops be redrawn, and
    seed 5's labels are a single class, so every crop fails the check (mmseg then draws 11
    offsets, detectron2's RandomCrop_CategoryAreaConstraint only 10)."""
    height, width = 90 + 7 * seed, 150 - 5 * seed
    labels = labels_with_a_dominant_class(height, width, seed)
    if seed == 5:
        labels[:] = 4
    record, image_path, labels = training_sample(tmp_path, seed, labels)
    expected_image, expected_labels = official_training_sample(image_path, labels, seed)
    np.random.seed(seed)
    ours = ade20k_train_mapper(record)
    assert np.array_equal(mm.as_bgr_uint8(ours["image"]), expected_image)
    assert np.array_equal(ours["sem_seg"].numpy(), expected_labels)


class RecordingBackbone(Backbone):
    """Stands in for the recipe's backbone: records the images it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    @property
    def size_divisibility(self) -> int:
        return 32

    def forward(self, images):
        self.seen.append(images)
        return {}


class RecordingHead(torch.nn.Module):
    """Stands in for the decode head: records the training targets, computes nothing."""

    def __init__(self):
        super().__init__()
        self.ignore_value, self.seen = 255, []

    def forward(self, features, targets):
        self.seen.append(targets)
        return None, {}


def test_the_segmentor_trains_on_mmsegs_normalised_and_padded_crop(tmp_path, ade20k_train_mapper):
    """mmseg then normalises (CLIP mean/std, BGR→RGB) and pads the crop to 512² (image 0, labels
    255): the recipe's segmentor feeds its backbone and its loss those tensors."""
    seed = 5  # its random resize ratio (0.83) leaves the crop under 512 pixels high
    labels = labels_with_a_dominant_class(60, 90, seed)
    record, image_path, labels = training_sample(tmp_path, seed, labels)
    image, crop_labels = official_training_sample(image_path, labels, seed)
    expected = mm.normalize_and_pad({"img": image, "gt_semantic_seg": crop_labels})
    assert image.shape[0] < 512  # so that padding happens

    recipe = LazyConfig.load(
        os.path.join(REPO_ROOT, "configs", "ADE20K", "denseclip_fpn_res50_512x512_80k.py")
    )
    recipe.model.backbone = L(RecordingBackbone)()
    recipe.model.sem_seg_head = L(RecordingHead)()
    model = instantiate(recipe.model).train()
    np.random.seed(seed)
    model([ade20k_train_mapper(record)])
    torch.testing.assert_close(
        model.backbone.seen[0][0],
        torch.from_numpy(expected["img"].transpose(2, 0, 1)),
        atol=1e-5,
        rtol=0,
    )
    assert torch.equal(
        model.sem_seg_head.seen[0][0], torch.from_numpy(expected["gt_semantic_seg"]).long()
    )


def test_photometric_distortion_equals_mmseg_for_the_same_draws():
    """Every combination of steps and the contrast position, with the draws injected into the
    reference and given to our transform: the same pixels."""
    image_bgr = photo(24, 32, seed=1)
    for mode in (0, 1):
        for gates in np.ndindex(2, 2, 2, 2):
            brightness, contrast, saturation, hue = gates
            draws = [("randint", brightness)] + [("uniform", 20.7)] * brightness
            draws += [("randint", mode)]
            contrast_draws = [("randint", contrast)] + [("uniform", 1.31)] * contrast
            draws += contrast_draws if mode == 1 else []
            draws += [("randint", saturation)] + [("uniform", 0.62)] * saturation
            draws += [("randint", hue)] + [("randint", -13)] * hue
            draws += contrast_draws if mode == 0 else []
            rng = mm.ScriptedRNG(draws)
            expected = mm.PhotoMetricDistortion(rng=rng)({"img": image_bgr})["img"]
            assert rng.draws == []
            ours = PhotoMetricTransform(
                20.7 if brightness else None,
                1.31 if contrast else None,
                bool(mode),
                0.62 if saturation else None,
                -13 if hue else None,
                image_format="BGR",
            ).apply_image(image_bgr)
            assert np.array_equal(ours, expected), (mode, gates)


def test_photometric_distortion_equals_mmseg_for_the_same_seed():
    """The augmentation alone, over seeds that reach every branch (each step on and off, the
    contrast first and last): mmseg's image after the same seed, and the same RNG state after."""
    image_bgr = photo(8, 8, seed=2)
    ours_augmentation = PhotoMetricDistortion(image_format="BGR")
    for seed in range(24):
        np.random.seed(seed)
        expected = mm.PhotoMetricDistortion()({"img": image_bgr})["img"]
        after_expected = np.random.random_sample()
        np.random.seed(seed)
        ours = ours_augmentation.get_transform(image_bgr).apply_image(image_bgr)
        assert np.array_equal(ours, expected), seed
        assert np.random.random_sample() == after_expected, seed


# ----------------------------------------------------------------------------- ADE20K inference


def balance_classes_(official: ref.EncoderDecoder, image_bgr: np.ndarray) -> None:
    """Random weights favour one class almost everywhere, which would make label maps agree
    trivially; shifting the classifier bias by each class's mean logit on a calibration image
    gives label maps with all K classes and many boundaries."""
    with torch.no_grad():
        logits = official(mm.mmseg_test_input(image_bgr, SCALE), image_bgr.shape[:2])
        official.decode_head.conv_seg.bias -= logits.mean(dim=(0, 2, 3))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(official reference model, our converted model): an official-format release file with
    random weights, written with mmcv's checkpoint structure, loaded and converted as
    ``tools/convert_official_checkpoint.py`` does, into the tiny config at the official sizes."""
    official = ref.randomize_(eq.build_official("resnet", eq.TINY, eq.CLASS_NAMES, SLIDE), 0)
    official.eval()
    eq.emphasize_score_channels_(official)
    balance_classes_(official, photo(128, 170, seed=7))
    path = tmp_path_factory.mktemp("release") / "denseclip_fpn_tiny.pth"
    state_dict, meta = load_official_checkpoint(
        mm.save_mmcv_checkpoint(official, path, eq.CLASS_NAMES)
    )
    converted = convert_official_state_dict(state_dict, source=str(path)).state_dict
    ours = instantiate(eq.tiny_config(load_synthetic_config, "resnet", SLIDE).model)
    check_matches_model(converted, ours.state_dict())
    check_class_names(meta["CLASSES"], ours)
    ours.load_state_dict(converted)
    return official, ours.eval()


def ade20k_test_mapper(resize_backend="opencv"):
    """The recipe's test mapper at :data:`SCALE`."""
    mapper = copy.deepcopy(data_config("ade20k_sem_seg").dataloader.test.mapper)
    mapper.augmentations.update(scale=SCALE, resize_backend=resize_backend)
    return instantiate(mapper)


@pytest.fixture(scope="module")
def opencv_test_mapper():
    return ade20k_test_mapper()


def predict(model, mapper, path: str, height: int, width: int):
    with torch.no_grad():
        return model([mapper({"file_name": path, "height": height, "width": width})])[0]


# sizes not multiples of 32; landscape and portrait; enlarged (small) and reduced (large)
SIZES = [(97, 131), (131, 97), (250, 333), (333, 250), (479, 641)]


@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_label_maps_from_an_image_file_equal_the_official_test(
    tmp_path, release, opencv_test_mapper, size
):
    """Image file → label map: our test mapper (mmcv's keep-ratio resize with OpenCV) + slide
    inference + logits resized to the original size, against mmseg's test pipeline and
    ``simple_test`` on the same file."""
    official, ours = release
    path = write_image(tmp_path / "photo.jpg", photo(*size, seed=sum(size)))
    with torch.no_grad():
        expected = mm.mmseg_simple_test(official, path, SCALE)
    actual = predict(ours, opencv_test_mapper, path, *size)["sem_seg"]
    identical = mm.fraction_identical(
        mm.segmentation_label_maps(actual), mm.segmentation_label_maps(expected)
    )
    difference = (actual - expected[0]).abs().max().item()
    print(f"\n{size}: {identical:.4%} identical pixels, max |Δlogit| {difference:.1e}")
    assert len(np.unique(mm.segmentation_label_maps(expected))) == eq.K  # a discriminative case
    assert identical >= MIN_IDENTICAL
    assert difference <= eq.TOLERANCE * (expected.max() - expected.min()).item()


def test_the_pil_resize_switch_changes_the_label_maps(tmp_path, release):
    """``resize_backend="pil"`` (detectron2's resize) keeps the sizes but changes the pixels the
    model sees, and so logits and label maps; the official ("opencv") backend does not."""
    official, ours = release
    size = SIZES[-1]
    path = write_image(tmp_path / "photo.jpg", photo(*size, seed=sum(size)))
    with torch.no_grad():
        expected = mm.mmseg_simple_test(official, path, SCALE)[0]
    pil = predict(ours, ade20k_test_mapper("pil"), path, *size)["sem_seg"]
    identical = mm.fraction_identical(
        mm.segmentation_label_maps(pil), mm.segmentation_label_maps(expected)
    )
    print(f"\npil resize: {identical:.4%} identical pixels")
    assert (pil - expected).abs().max() > 100 * eq.TOLERANCE * (expected.max() - expected.min())
    assert identical < 1


def test_multi_scale_flip_test_equals_the_official_aug_test(tmp_path, release):
    """``--aug-test`` (the test mapper does not resize; the wrapper rescales the original uint8
    image with mmcv's resize for every ratio, and flips) against mmseg's ``aug_test``. Ratios
    from 1 up: below, the resized image is smaller than a window, see the module docstring of
    test_official_equivalence.py."""
    official, ours = release
    size, ratios = (97, 131), (1.0, 1.25)
    path = write_image(tmp_path / "photo.jpg", photo(*size, seed=3))
    with torch.no_grad():
        expected = mm.mmseg_aug_test(official, path, ratios, img_scale=SCALE)[0]
    tta = SemanticSegmentorWithTTA(ours, scales=ratios, flip=True, base_size=SCALE)
    mapper = copy.deepcopy(data_config("ade20k_sem_seg").dataloader.test.mapper)
    mapper.augmentations = []  # as --aug-test sets it
    actual = predict(tta, instantiate(mapper), path, *size)["sem_seg"]
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    identical = mm.fraction_identical(
        mm.segmentation_label_maps(actual), mm.segmentation_label_maps(expected)
    )
    assert identical >= MIN_IDENTICAL


# ----------------------------------------------------------------------------- COCO training


@pytest.fixture(scope="module")
def coco_train_mapper():
    """The Mask R-CNN recipe's train mapper (``coco_instance.py``: boxes and masks)."""
    return instantiate(data_config("coco_instance").dataloader.train.mapper)


def coco_record(image_path: str, height: int, width: int) -> dict:
    """Four objects with polygons: two inside, one sticking out of the right border (clipped),
    and one 0.6 pixel wide (mmdet skips it, detectron2's mapper alone would keep it)."""
    boxes = [[3.5, 7.25, 40.0, 33.5], [60.2, 10.0, 55.3, 80.1], [width - 20.0, 50.0, 35.0, 30.0]]
    boxes.append([30.0, 60.0, 0.6, 20.0])
    annotations = []
    for index, (x, y, w, h) in enumerate(boxes):
        triangle = [x, y, x + w, y + h / 3, x + w / 2, y + h]  # inside its box
        annotations.append(
            {
                "bbox": [x, y, w, h],
                "bbox_mode": BoxMode.XYWH_ABS,
                "category_id": index,
                "iscrowd": 0,
                "segmentation": [triangle],
            }
        )
    return {
        "file_name": image_path,
        "height": height,
        "width": width,
        "image_id": 0,
        "annotations": annotations,
    }


@pytest.mark.parametrize("seed", range(4))
def test_coco_training_samples_equal_mmdet_for_the_same_seed(tmp_path, coco_train_mapper, seed):
    """The COCO recipe's train mapper against mmdet's pipeline after the same seed: the resized
    (and, for some seeds, flipped) image pixel for pixel; the objects mmdet keeps; their boxes
    scaled per axis, clipped to the image and flipped as x' = W - x; their masks rasterised at
    the original size, resized with the image and flipped, bit for bit."""
    height, width = 120 + 9 * seed, 161 - 7 * seed
    image_path = write_image(tmp_path / "coco.jpg", photo(height, width, seed))
    record = coco_record(image_path, height, width)
    loaded = mm.load_coco_annotations(
        [dict(a, area=a["bbox"][2] * a["bbox"][3]) for a in record["annotations"]], height, width
    )
    np.random.seed(seed)
    expected = mm.compose(mm.coco_train_pipeline(), dict(loaded, img=mm.imread_color(image_path)))
    np.random.seed(seed)
    ours = coco_train_mapper(record)
    assert np.array_equal(mm.as_bgr_uint8(ours["image"]), expected["img"])
    instances = ours["instances"]
    assert instances.gt_classes.tolist() == [0, 1, 2]
    np.testing.assert_allclose(
        instances.gt_boxes.tensor.numpy(), expected["gt_bboxes"], rtol=0, atol=1e-3
    )
    assert np.array_equal(instances.gt_masks.tensor.numpy(), expected["gt_masks"].astype(bool))
    print(f"\nseed {seed}: flipped {expected['flip']}")


def test_mmdet_mapper_switches_off_to_detectron2s_reading(tmp_path):
    """``drop_small_boxes=False`` keeps the 0.6-pixel-wide object; ``masks_at_original_size=
    False`` leaves the polygons to detectron2; bitmaps need ``instance_mask_format="bitmask"``."""
    mapper_config = data_config("coco_instance").dataloader.train.mapper
    mapper_config.update(drop_small_boxes=False, masks_at_original_size=False)
    mapper_config.update(instance_mask_format="polygon")
    image_path = write_image(tmp_path / "coco.jpg", photo(120, 161, seed=0))
    instances = instantiate(mapper_config)(coco_record(image_path, 120, 161))["instances"]
    assert instances.gt_classes.tolist() == [0, 1, 2, 3]
    assert type(instances.gt_masks).__name__ == "PolygonMasks"
    mapper_config.masks_at_original_size = True
    with pytest.raises(ValueError, match="instance_mask_format='bitmask'.*'polygon'"):
        instantiate(mapper_config)


def test_the_coco_seeds_cover_both_flip_outcomes():
    """Guards the test above: its seeds give mmdet flips and non-flips."""
    outcomes = set()
    for seed in range(4):
        np.random.seed(seed)
        outcomes.add(np.random.choice(["horizontal", None], p=[0.5, 0.5]) is not None)
    assert outcomes == {True, False}


# ----------------------------------------------------------------------------- release files


def test_an_mmcv_release_file_loads_weights_only_with_its_meta_and_optimizer(tmp_path):
    """What mmcv 1.3.17's save_checkpoint writes (config text, env info, CLASSES, PALETTE, hook
    messages with a numpy scalar, an optimizer state) loads without unrestricted pickle."""
    official = ref.randomize_(eq.build_official("resnet", eq.TINY, eq.CLASS_NAMES, SLIDE), 0)
    path = mm.save_mmcv_checkpoint(official, tmp_path / "iter_80000.pth", eq.CLASS_NAMES)
    state_dict, meta = load_official_checkpoint(path)
    assert meta["CLASSES"] == eq.CLASS_NAMES and meta["iter"] == 80000
    assert meta["hook_msgs"]["best_score"] == np.float64(0.4352)
    assert isinstance(meta["hook_msgs"]["best_score"], np.float64)
    assert state_dict.keys() == official.state_dict().keys()
    for key, value in official.state_dict().items():
        assert torch.equal(state_dict[key], value), key


def test_a_release_file_that_needs_other_types_is_refused_naming_the_type_and_file(tmp_path):
    import argparse

    path = str(tmp_path / "suspicious.pth")
    torch.save({"meta": {"args": argparse.Namespace(lr=0.1)}, "state_dict": {}}, path)
    with pytest.raises(OfficialCheckpointError, match=r"suspicious.pth: .*argparse\.Namespace"):
        load_official_checkpoint(path)
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
