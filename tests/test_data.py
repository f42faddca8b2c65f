"""Specifications of ``denseclip.data``: folder datasets, synthetic data, ADE20K names, transforms."""

import argparse
import hashlib
import json
import os

import cv2
import mmcv_reference as mmcv
import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets.builtin_meta import ADE20K_SEM_SEG_CATEGORIES

from denseclip.data import (
    ADE20K_CLASSES,
    SYNTHETIC_CLASSES,
    DatasetFormatError,
    KeepRatioResize,
    OpenCVResizeTransform,
    PhotoMetricDistortion,
    PhotoMetricTransform,
    RandomCropCatMaxRatio,
    RandomRatioResize,
    ade20k_test_augmentations,
    ade20k_train_augmentations,
    detect_layout,
    mmcv_rescale_size,
    parse_dataset_arg,
    register_folder_dataset,
    write_synthetic_segmentation,
)
from denseclip.data import synthetic
from denseclip.data.synthetic import rendering, writing
from helpers import run_python

# ---------------------------------------------------------------------------------------------
# helpers


def write_folder_dataset(root, classes=("cat", "dog"), splits=None):
    """Write a segmentation-layout dataset; ``splits`` maps split → {stem: label array}."""
    if splits is None:
        splits = {
            "train": {"a": np.zeros((4, 6), np.uint8), "b": np.ones((4, 6), np.uint8)},
            "val": {"c": np.full((4, 6), 255, np.uint8)},
        }
    (root / "classes.txt").write_text("\n".join(classes) + "\n\n")
    for split, labels in splits.items():
        os.makedirs(root / "images" / split, exist_ok=True)
        os.makedirs(root / "annotations" / split, exist_ok=True)
        for stem, label in labels.items():
            image = np.full(label.shape + (3,), 128, np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), image)
            cv2.imwrite(str(root / "annotations" / split / f"{stem}.png"), label)
    return root


def error_message(func, *args):
    with pytest.raises(DatasetFormatError) as info:
        func(*args)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# folder datasets


def test_register_folder_dataset_gives_dicts_and_metadata(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    names = register_folder_dataset(dataset_name, str(root))
    assert names == [f"{dataset_name}_train", f"{dataset_name}_val"]
    dicts = DatasetCatalog.get(names[0])
    assert dicts == [
        {
            "file_name": str(root / "images/train/a.jpg"),
            "sem_seg_file_name": str(root / "annotations/train/a.png"),
            "height": 4,
            "width": 6,
            "image_id": "a",
        },
        {
            "file_name": str(root / "images/train/b.jpg"),
            "sem_seg_file_name": str(root / "annotations/train/b.png"),
            "height": 4,
            "width": 6,
            "image_id": "b",
        },
    ]
    meta = MetadataCatalog.get(names[1])
    assert meta.stuff_classes == meta.class_prompts == ["cat", "dog"]
    assert meta.ignore_label == 255 and meta.evaluator_type == "sem_seg"
    assert meta.image_root == str(root / "images/val")
    assert meta.sem_seg_root == str(root / "annotations/val")
    assert len(meta.stuff_colors) == 2 and meta.stuff_colors[0] != meta.stuff_colors[1]


def test_missing_root_is_named(tmp_path, dataset_name):
    message = error_message(register_folder_dataset, dataset_name, str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in message


def test_unknown_layout_names_what_was_looked_for(tmp_path):
    (tmp_path / "stuff").mkdir()
    message = error_message(detect_layout, str(tmp_path))
    assert "classes.txt" in message and os.path.join("annotations", "train") in message


def test_missing_subfolder_is_named(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    os.rename(root / "images" / "val", root / "elsewhere")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "images" / "val") in message


def test_missing_classes_file_is_named(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    os.remove(root / "classes.txt")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "classes.txt") in message


def test_blank_classes_file_is_an_error(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    (root / "classes.txt").write_text("\n  \n")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "classes.txt") in message and "found none" in message


def test_image_without_label_names_both(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    os.remove(root / "annotations" / "train" / "b.png")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "images/train/b.jpg") in message
    assert str(root / "annotations/train/b.png") in message


def test_label_without_image_names_both(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    os.remove(root / "images" / "train" / "b.jpg")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "annotations/train/b.png") in message
    assert str(root / "images/train/b.jpg") in message


def test_empty_split_is_named(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path, splits={"train": {"a": np.zeros((4, 6), np.uint8)}})
    (root / "images" / "val").mkdir()
    (root / "annotations" / "val").mkdir()
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "images" / "val") in message and "empty" in message


def test_label_value_out_of_range_fails_at_load_naming_file_value_and_k(tmp_path, dataset_name):
    bad = np.zeros((4, 6), np.uint8)
    bad[1, 2] = 7
    root = write_folder_dataset(
        tmp_path, splits={"train": {"a": bad}, "val": {"c": np.zeros((4, 6), np.uint8)}}
    )
    names = register_folder_dataset(dataset_name, str(root))  # structure is fine
    message = error_message(DatasetCatalog.get, names[0])
    assert str(root / "annotations/train/a.png") in message
    assert "value 7" in message and "K=2" in message


def test_ignore_value_255_is_accepted(tmp_path, dataset_name):
    label = np.array([[0, 1, 255]], np.uint8)
    root = write_folder_dataset(tmp_path, splits={"train": {"a": label}, "val": {"c": label}})
    names = register_folder_dataset(dataset_name, str(root))
    assert len(DatasetCatalog.get(names[0])) == 1


def test_colour_label_is_rejected(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    cv2.imwrite(str(root / "annotations/val/c.png"), np.zeros((4, 6, 3), np.uint8))
    names = register_folder_dataset(dataset_name, str(root))
    message = error_message(DatasetCatalog.get, names[1])
    assert str(root / "annotations/val/c.png") in message and "single-channel" in message


def test_same_name_same_root_is_a_no_op(tmp_path, dataset_name):
    root = write_folder_dataset(tmp_path)
    first = register_folder_dataset(dataset_name, str(root))
    assert register_folder_dataset(dataset_name, str(root) + "/") == first


def test_same_name_other_root_is_an_error(tmp_path, dataset_name):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first, second = write_folder_dataset(tmp_path / "one"), write_folder_dataset(tmp_path / "two")
    register_folder_dataset(dataset_name, str(first))
    message = error_message(register_folder_dataset, dataset_name, str(second))
    assert str(first) in message and str(second) in message


def test_parse_dataset_arg_splits_name_and_root():
    assert parse_dataset_arg("shapes=/data/shapes") == ("shapes", "/data/shapes")
    assert parse_dataset_arg("a=b=c") == ("a", "b=c")


@pytest.mark.parametrize("text", ["shapes", "=/data", "shapes=", "bad name=/data"])
def test_parse_dataset_arg_rejects_bad_forms_with_argparse_message(text, capsys):
    with pytest.raises(ValueError, match="NAME=ROOT"):
        parse_dataset_arg(text)
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=parse_dataset_arg)
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", text])
    assert "expected NAME=ROOT" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# synthetic dataset

SMALL = dict(num_train=3, num_val=2, image_size=(32, 48))


def read_tree(root):
    return {
        os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(root)
        for f in files
    }


def test_synthetic_is_deterministic_for_a_seed(tmp_path):
    first = read_tree(write_synthetic_segmentation(tmp_path / "a", seed=3, **SMALL))
    second = read_tree(write_synthetic_segmentation(tmp_path / "b", seed=3, **SMALL))
    other = read_tree(write_synthetic_segmentation(tmp_path / "c", seed=4, **SMALL))
    assert first == second
    assert first["images/train/train_00000.png"] != other["images/train/train_00000.png"]


def test_synthetic_labels_are_class_ids_or_ignore(tmp_path):
    root = write_synthetic_segmentation(tmp_path / "d", **SMALL)
    assert (tmp_path / "d" / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    for split, count in (("train", 3), ("val", 2)):
        files = sorted(os.listdir(os.path.join(root, "annotations", split)))
        assert len(files) == count
        for name in files:
            label = cv2.imread(os.path.join(root, "annotations", split, name), -1)
            assert label.shape == (32, 48) and label.dtype == np.uint8
            assert set(np.unique(label)) <= set(range(len(SYNTHETIC_CLASSES))) | {255}


def test_synthetic_crash_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def crash(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writing, "generate_sample", crash)
    with pytest.raises(RuntimeError):
        write_synthetic_segmentation(tmp_path / "d", **SMALL)
    assert os.listdir(tmp_path) == []


def test_synthetic_marks_completion_and_skips_a_complete_dataset(tmp_path, monkeypatch):
    root = write_synthetic_segmentation(tmp_path / "d", **SMALL)
    assert os.path.isfile(os.path.join(root, synthetic.MARKER_NAME))
    monkeypatch.setattr(writing, "generate_sample", None)  # would fail if called
    assert write_synthetic_segmentation(tmp_path / "d", **SMALL) == root


def test_synthetic_accepts_a_concurrent_writer_that_published_first(tmp_path, monkeypatch):
    root, write_files = tmp_path / "d", writing._write_segmentation_files

    def lose_the_race(tmp, params):
        write_files(tmp, params)
        root.mkdir()
        write_files(str(root), params)  # another process renames its copy into place first

    monkeypatch.setattr(writing, "_write_segmentation_files", lose_the_race)
    assert write_synthetic_segmentation(root, **SMALL) == str(root)
    assert os.listdir(tmp_path) == ["d"]


def test_synthetic_refuses_an_incomplete_or_different_folder(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "classes.txt").write_text("sky\n")
    with pytest.raises(FileExistsError, match="COMPLETE.json"):
        write_synthetic_segmentation(tmp_path / "half", **SMALL)
    write_synthetic_segmentation(tmp_path / "d", seed=0, **SMALL)
    with pytest.raises(FileExistsError, match="'seed': 1"):
        write_synthetic_segmentation(tmp_path / "d", seed=1, **SMALL)


def test_builtin_synthetic_is_generated_lazily_under_env_root(
    tmp_path, monkeypatch, synthetic_datasets
):
    assert MetadataCatalog.get("synthetic_seg_train").class_prompts == list(SYNTHETIC_CLASSES)
    monkeypatch.setenv("DENSECLIP_DATASETS", str(tmp_path))
    dicts = DatasetCatalog.get("synthetic_seg_val")
    assert len(dicts) == 16
    assert dicts[0]["file_name"].startswith(str(tmp_path / "synthetic_seg" / "images" / "val"))
    assert (dicts[0]["height"], dicts[0]["width"]) == (128, 128)


def test_synthetic_datasets_are_registered_by_the_configs_that_use_them(datasets_dir):
    code = (
        "import denseclip, denseclip.data\n"
        "from detectron2.config import LazyConfig\n"
        "from detectron2.data import DatasetCatalog\n"
        "def synthetic(): return sorted(n for n in DatasetCatalog.list() if 'synthetic' in n)\n"
        "print('after import:', synthetic())\n"
        "LazyConfig.load('configs/Synthetic/denseclip_fpn_demo.py')\n"
        "print('after config:', synthetic())\n"
    )
    run = run_python(["-c", code], datasets_dir)
    assert run.returncode == 0, run.describe()
    assert "after import: []" in run.output, run.describe()
    seg = ["synthetic_demo_train", "synthetic_demo_val", "synthetic_seg_train", "synthetic_seg_val"]
    assert f"after config: {seg}" in run.output, run.describe()


def test_synthetic_default_style_draws_what_generator_v1_drew():
    """Datasets cached before styles existed have markers without a style: the default style
    must keep drawing the same pictures (digest of generator v1's output)."""
    image, labels = synthetic.generate_sample(0, 1, 2, (64, 96))
    digest = hashlib.sha256(image.tobytes() + labels.tobytes()).hexdigest()
    assert digest == "1eac4327a1b7bec8cd577fe9a9f53ec5bee21ecf49a02dce241fbbbeb04fd186"


@pytest.mark.parametrize("index", range(6))
def test_synthetic_apart_style_draws_3_to_8_shapes_that_never_overlap(index):
    _, labels, shapes = rendering._render(0, 0, index, (128, 128), "apart")
    assert 1 <= len(shapes) <= 8
    touched = sum((coverage > 0).astype(int) for _, coverage in shapes)
    assert touched.max() == 1  # no pixel is covered by two shapes
    for kind, coverage in shapes:
        assert (labels[coverage >= 1.0] == kind).all()


def test_synthetic_apart_style_draws_several_shapes_of_every_class():
    shapes = [
        kind for i in range(20) for kind, _ in rendering._render(0, 0, i, (64, 64), "apart")[2]
    ]
    counts = np.bincount(shapes, minlength=len(SYNTHETIC_CLASSES))
    assert len(shapes) >= 3 * 20 and counts[:2].sum() == 0 and counts[2:].min() >= 15, counts


def test_synthetic_style_is_in_the_marker_unless_default(tmp_path):
    default = write_synthetic_segmentation(tmp_path / "a", **SMALL)
    apart = write_synthetic_segmentation(tmp_path / "b", style="apart", **SMALL)
    assert "style" not in json.loads(open(os.path.join(default, synthetic.MARKER_NAME)).read())
    assert json.loads(open(os.path.join(apart, synthetic.MARKER_NAME)).read())["style"] == "apart"
    assert (
        read_tree(default)["images/val/val_00001.png"]
        != read_tree(apart)["images/val/val_00001.png"]
    )


def test_synthetic_unknown_style_is_named():
    with pytest.raises(ValueError, match="style: expected one of .*'apart'.*, got 'dense'"):
        synthetic.generate_sample(0, 0, 0, (32, 32), style="dense")


def test_synthetic_cli_writes_a_style_and_refuses_it_for_detection(tmp_path, capsys):
    writing.main([str(tmp_path / "d"), "--num-train", "2", "--num-val", "1", "--style", "apart"])
    assert json.loads((tmp_path / "d" / synthetic.MARKER_NAME).read_text())["style"] == "apart"
    with pytest.raises(SystemExit):
        writing.main([str(tmp_path / "e"), "--layout", "detection", "--style", "apart"])
    assert "--style: only the segmentation layout has styles" in capsys.readouterr().err


def test_builtin_demo_dataset_is_the_apart_style_with_scene_colours(
    tmp_path, monkeypatch, synthetic_datasets
):
    metadata = MetadataCatalog.get("synthetic_demo_train")
    assert metadata.stuff_classes == list(SYNTHETIC_CLASSES)
    assert metadata.stuff_colors == synthetic.SYNTHETIC_COLORS
    assert synthetic.BUILTIN_SEGMENTATION["synthetic_demo"]["style"] == "apart"
    small = dict(synthetic.BUILTIN_SEGMENTATION["synthetic_demo"], num_train=2, num_val=1)
    monkeypatch.setitem(synthetic.BUILTIN_SEGMENTATION, "synthetic_demo", small)
    monkeypatch.setenv("DENSECLIP_DATASETS", str(tmp_path))
    (record,) = DatasetCatalog.get("synthetic_demo_val")
    assert record["file_name"].startswith(str(tmp_path / "synthetic_demo" / "images" / "val"))
    marker = json.loads((tmp_path / "synthetic_demo" / synthetic.MARKER_NAME).read_text())
    assert marker["style"] == "apart" and marker["num_train"] == 2


# ---------------------------------------------------------------------------------------------
# ADE20K names


def test_ade20k_has_mmseg_150_short_names_in_detectron2_order():
    assert len(ADE20K_CLASSES) == 150 == len(ADE20K_SEM_SEG_CATEGORIES)
    assert ADE20K_CLASSES[:3] == ("wall", "building", "sky")
    assert ADE20K_CLASSES[7] == "bed "  # mmseg's trailing space, kept
    for index, short in [(6, "road"), (44, "chest of drawers"), (56, "pool table"), (149, "flag")]:
        assert ADE20K_CLASSES[index] == short
        assert ADE20K_SEM_SEG_CATEGORIES[index].startswith(short)
    assert MetadataCatalog.get("ade20k_sem_seg_val").class_prompts == list(ADE20K_CLASSES)


def test_ade20k_names_fit_in_three_bpe_tokens():
    from clip.simple_tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    assert max(len(tokenizer.encode(name)) for name in ADE20K_CLASSES + SYNTHETIC_CLASSES) <= 3


# ---------------------------------------------------------------------------------------------
# transforms


@pytest.mark.parametrize(
    "size, ratio, expected",
    [
        ((400, 600), 1.0, (512, 768)),  # short edge limits: 512 / 400 = 1.28
        ((400, 600), 0.5, (256, 384)),  # target (1024, 256): 256 / 400 = 0.64
        ((100, 1000), 1.0, (205, 2048)),  # long edge limits: 2048 / 1000; 204.8 rounds to 205
        ((512, 512), 1.5, (768, 768)),
    ],
)
def test_random_ratio_resize_sizes(size, ratio, expected):
    image = np.zeros(size + (3,), np.uint8)
    transform = RandomRatioResize(ratio_range=(ratio, ratio)).get_transform(image)
    assert isinstance(transform, OpenCVResizeTransform)
    assert transform.apply_image(image).shape[:2] == expected
    assert transform.apply_segmentation(np.zeros(size, np.uint8)).shape == expected


def test_random_ratio_resize_keeps_label_values():
    seg = np.random.RandomState(0).choice([0, 3, 255], size=(40, 60)).astype(np.uint8)
    transform = RandomRatioResize(ratio_range=(0.5, 2.0)).get_transform(seg[..., None])
    assert set(np.unique(transform.apply_segmentation(seg))) <= {0, 3, 255}


def test_photometric_distortion_keeps_shape_dtype_and_segmentation():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (20, 30, 3)).astype(np.uint8)
    seg = rng.randint(0, 5, (20, 30)).astype(np.uint8)
    np.random.seed(7)  # every step on: brightness, saturation, hue, then contrast
    aug_input = T.AugInput(image, sem_seg=seg.copy())
    (transform,) = T.AugmentationList([PhotoMetricDistortion()])(aug_input)
    assert None not in (transform.brightness_beta, transform.contrast_alpha)
    assert None not in (transform.saturation_alpha, transform.hue_shift)
    assert aug_input.image.shape == image.shape and aug_input.image.dtype == np.uint8
    assert not np.array_equal(aug_input.image, image)
    assert np.array_equal(aug_input.sem_seg, seg)


def test_photometric_transform_without_steps_is_identity():
    image = np.random.RandomState(0).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    transform = PhotoMetricTransform(None, None, True, None, None)
    assert np.array_equal(transform.apply_image(image), image)


def test_photometric_brightness_and_contrast_clip_and_truncate():
    image = np.array([[[250, 3, 100]]], np.uint8)
    brighter = PhotoMetricTransform(10.7, None, True, None, None).apply_image(image)
    assert brighter.tolist() == [[[255, 13, 110]]]
    contrast = PhotoMetricTransform(None, 1.5, False, None, None).apply_image(image)
    assert contrast.tolist() == [[[255, 4, 150]]]


def test_photometric_hsv_steps_see_true_colours_in_rgb_and_bgr():
    rgb = np.random.RandomState(1).randint(0, 256, (8, 8, 3)).astype(np.uint8)
    params = (None, None, True, 1.3, 7)
    out_rgb = PhotoMetricTransform(*params, image_format="RGB").apply_image(rgb)
    out_bgr = PhotoMetricTransform(*params, image_format="BGR").apply_image(rgb[..., ::-1].copy())
    assert np.array_equal(out_rgb, out_bgr[..., ::-1])
    grey = np.full((2, 2, 3), 90, np.uint8)  # no saturation: saturation and hue leave it alone
    assert np.array_equal(PhotoMetricTransform(*params).apply_image(grey), grey)


def test_ade20k_train_augmentations_follow_mmseg_order_and_crop():
    augs = ade20k_train_augmentations(crop_size=64, scale=(256, 64))
    assert [type(a) for a in augs] == [
        RandomRatioResize,
        RandomCropCatMaxRatio,
        T.RandomFlip,
        PhotoMetricDistortion,
    ]
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (50, 80, 3)).astype(np.uint8)
    seg = rng.randint(0, 3, (50, 80)).astype(np.uint8)
    aug_input = T.AugInput(image, sem_seg=seg)
    T.AugmentationList(augs)(aug_input)
    assert aug_input.image.shape[:2] == aug_input.sem_seg.shape
    assert max(aug_input.sem_seg.shape) <= 64


class CountingDraws:
    """Records the ``np.random.randint`` calls while it is patched in (by monkeypatch)."""

    def __init__(self, monkeypatch):
        self.calls, real = [], np.random.randint

        def randint(*args, **kwargs):
            self.calls.append(args)
            return real(*args, **kwargs)

        monkeypatch.setattr(np.random, "randint", randint)


def test_crop_redraws_ten_times_like_mmseg_when_one_class_fills_every_crop(monkeypatch):
    """A single-class label map fails the check for every crop: mmseg draws the offset once and
    redraws it 10 times (22 randint calls: row then column each time) and keeps the last."""
    draws = CountingDraws(monkeypatch)
    seg = np.full((40, 50), 3, np.uint8)
    crop = RandomCropCatMaxRatio((16, 16), cat_max_ratio=0.75)
    transform = crop.get_transform(np.zeros((40, 50, 3), np.uint8), seg)
    assert draws.calls == [(0, 25), (0, 35)] * 11
    assert (transform.h, transform.w) == (16, 16)


def test_crop_stops_redrawing_at_the_first_acceptable_crop(monkeypatch):
    draws = CountingDraws(monkeypatch)
    seg = np.zeros((40, 50), np.uint8)
    seg[:, 25:] = 1  # every 16x50 crop holds half of each class
    crop = RandomCropCatMaxRatio((16, 50), cat_max_ratio=0.75)
    transform = crop.get_transform(np.zeros((40, 50, 3), np.uint8), seg)
    assert draws.calls == [(0, 25), (0, 1)]
    assert (transform.x0, transform.w, transform.h) == (0, 50, 16)


def test_crop_without_a_category_limit_draws_once_and_needs_no_labels(monkeypatch):
    draws = CountingDraws(monkeypatch)
    transform = RandomCropCatMaxRatio((16, 16)).get_transform(np.zeros((40, 50, 3)), None)
    assert draws.calls == [(0, 25), (0, 35)] and (transform.h, transform.w) == (16, 16)


def test_crop_leaves_out_the_ignore_label_and_shrinks_to_small_images(monkeypatch):
    """Class 1 covers 50 of the 60 labelled pixels (0.83 > 0.8), though only 50 of all 120: the
    check fails for every crop, which are all the whole 10x12 image (smaller than 16x16)."""
    draws = CountingDraws(monkeypatch)
    seg = np.full((10, 12), 255, np.uint8)
    seg[:, :6] = 1
    seg[:5, :2] = 2
    crop = RandomCropCatMaxRatio((16, 16), cat_max_ratio=0.8)
    transform = crop.get_transform(np.zeros((10, 12, 3), np.uint8), seg)
    assert len(draws.calls) == 22
    assert (transform.x0, transform.y0, transform.w, transform.h) == (0, 0, 12, 10)
    with pytest.raises(ValueError, match="sem_seg"):
        crop.get_transform(np.zeros((10, 12, 3), np.uint8), None)


@pytest.mark.parametrize("size", [(375, 500), (480, 640), (1080, 1920), (333, 4000), (97, 131)])
@pytest.mark.parametrize("scale", [(2048, 512), (1333, 800)])
def test_keep_ratio_resize_equals_mmcv_imrescale(size, scale):
    rng = np.random.RandomState(sum(size))
    image = rng.randint(0, 256, size + (3,)).astype(np.uint8)
    seg = rng.randint(0, 151, size).astype(np.uint8)
    transform = KeepRatioResize(scale).get_transform(image)
    assert np.array_equal(transform.apply_image(image), mmcv.imrescale(image, scale, "bilinear"))
    assert np.array_equal(transform.apply_segmentation(seg), mmcv.imrescale(seg, scale, "nearest"))


def test_pil_resize_backend_is_detectron2s_resize_with_the_same_size():
    image = np.random.RandomState(0).randint(0, 256, (300, 500, 3)).astype(np.uint8)
    pil = KeepRatioResize((1333, 800), backend="pil").get_transform(image)
    opencv = KeepRatioResize((1333, 800)).get_transform(image)
    assert isinstance(pil, T.ResizeTransform)
    assert pil.apply_image(image).shape == opencv.apply_image(image).shape == (800, 1333, 3)
    with pytest.raises(ValueError, match="backend"):
        KeepRatioResize((1333, 800), backend="cv2")


def test_opencv_resize_keeps_a_channel_dim_of_one_and_scales_coordinates():
    transform = OpenCVResizeTransform(10, 20, 15, 40)
    assert transform.apply_image(np.zeros((10, 20, 1), np.float32)).shape == (15, 40, 1)
    boxes = transform.apply_box(np.array([[2.0, 4.0, 10.0, 8.0]]))
    assert boxes.tolist() == [[4.0, 6.0, 20.0, 12.0]]
    assert transform.inverse().apply_box(boxes).tolist() == [[2.0, 4.0, 10.0, 8.0]]


def test_extreme_panoramas_keep_at_least_one_pixel():
    assert mmcv_rescale_size(1, 16000, (2048, 512)) == (1, 2048)


@pytest.mark.parametrize(
    "size, expected",
    [((512, 683), (512, 683)), ((256, 341), (512, 682)), ((400, 3000), (273, 2048))],
)
def test_ade20k_test_resize_matches_mmseg_rescale(size, expected):
    (aug,) = ade20k_test_augmentations()
    transform = aug.get_transform(np.zeros(size + (3,), np.uint8))
    assert (transform.new_h, transform.new_w) == expected
    assert mmcv_rescale_size(*size, (2048, 512)) == expected
