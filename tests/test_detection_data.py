"""Specification of the detection data: COCO class prompts, COCO-layout folder datasets
(registration and errors) and the synthetic detection dataset."""

import json
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog

from denseclip.clip import tokenize_class_names
from denseclip.data import (
    COCO_CLASSES,
    SYNTHETIC_DET_CLASSES,
    DatasetFormatError,
    detect_layout,
    register_folder_dataset,
    write_synthetic_detection,
    write_synthetic_segmentation,
)
from denseclip.data import synthetic
from denseclip.data.folder import BOX_TOLERANCE
from helpers import eval_results, run_train_net, tiny_overrides

SMALL = dict(num_train=3, num_val=2, image_size=(48, 64))


def write_coco_dataset(root, categories=((7, "dog"), (3, "cat")), annotations=None):
    """A COCO-layout dataset: 2 train images and 1 val image of 40x30 (width x height).

    ``annotations`` maps split → list of (image index, category id, [x, y, w, h]); by default one
    box per image, of category 7 in train and 3 in val.
    """
    if annotations is None:
        annotations = {
            "train": [(0, 7, [2, 3, 10, 8]), (1, 7, [20, 10, 15, 20])],
            "val": [(0, 3, [0, 0, 40, 30])],
        }
    os.makedirs(root / "annotations")
    for split, count in (("train", 2), ("val", 1)):
        os.makedirs(root / "images" / split)
        images = []
        for index in range(count):
            file_name = f"{split}_{index}.jpg"
            cv2.imwrite(str(root / "images" / split / file_name), np.zeros((30, 40, 3), np.uint8))
            images.append({"id": index + 1, "file_name": file_name, "width": 40, "height": 30})
        anns = [
            {
                "id": i + 1,
                "image_id": image + 1,
                "category_id": cat,
                "bbox": box,
                "area": 1.0,
                "iscrowd": 0,
            }
            for i, (image, cat, box) in enumerate(annotations[split])
        ]
        coco = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": i, "name": n} for i, n in categories],
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


def error_message(func, *args):
    with pytest.raises(DatasetFormatError) as info:
        func(*args)
    return str(info.value)


def edit_json(root, split, edit):
    path = root / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    return str(path)


# ---------------------------------------------------------------------------------- COCO names


def test_coco_prompts_are_mmdets_80_names_in_detectron2_order():
    assert len(COCO_CLASSES) == 80
    assert COCO_CLASSES[:3] == ("person", "bicycle", "car")
    assert COCO_CLASSES[9:13] == ("traffic light", "fire hydrant", "stop sign", "parking meter")
    assert COCO_CLASSES[-2:] == ("hair drier", "toothbrush")
    for name in ("coco_2017_train", "coco_2017_val"):
        meta = MetadataCatalog.get(name)
        assert meta.class_prompts == list(COCO_CLASSES) == meta.thing_classes


def test_coco_names_fit_in_three_bpe_tokens():
    tokens = tokenize_class_names(COCO_CLASSES, 5)
    assert tokens.shape == (80, 5)


# ---------------------------------------------------------------------------------- folder layout


def test_coco_layout_is_detected(tmp_path):
    assert detect_layout(str(write_coco_dataset(tmp_path))) == "detection"


def test_both_layouts_in_one_folder_is_an_error(tmp_path):
    root = write_coco_dataset(tmp_path)
    (root / "classes.txt").write_text("cat\n")
    message = error_message(detect_layout, str(root))
    assert str(root / "classes.txt") in message and "instances_train.json" in message


def test_register_coco_folder_gives_classes_in_id_order_and_coco_metadata(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    names = register_folder_dataset(dataset_name, str(root))
    assert names == [f"{dataset_name}_train", f"{dataset_name}_val"]
    meta = MetadataCatalog.get(names[0])
    assert meta.thing_classes == meta.class_prompts == ["cat", "dog"]  # ids 3, 7
    assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
    assert meta.evaluator_type == "coco"
    assert meta.json_file == str(root / "annotations" / "instances_train.json")
    assert meta.image_root == str(root / "images" / "train")


def test_registered_coco_folder_loads_detectron2_dicts(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    register_folder_dataset(dataset_name, str(root))
    dicts = DatasetCatalog.get(f"{dataset_name}_train")
    assert [d["file_name"] for d in dicts] == [
        str(root / "images" / "train" / f"train_{i}.jpg") for i in range(2)
    ]
    assert (dicts[0]["height"], dicts[0]["width"]) == (30, 40)
    assert dicts[1]["annotations"][0]["bbox"] == [20, 10, 15, 20]
    assert dicts[1]["annotations"][0]["category_id"] == 1  # "dog"


def test_missing_coco_json_is_named(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    os.remove(root / "annotations" / "instances_val.json")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert (
        str(root / "annotations" / "instances_val.json") in message and "found nothing" in message
    )


def test_invalid_json_is_named(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    (root / "annotations" / "instances_train.json").write_text("{not json")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "annotations" / "instances_train.json") in message
    assert "invalid JSON" in message


def test_missing_top_level_key_is_named(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    path = edit_json(root, "train", lambda coco: coco.pop("categories"))
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert path in message and "'categories'" in message


@pytest.mark.parametrize("key", ["id", "image_id", "category_id", "bbox", "area", "iscrowd"])
def test_annotation_without_a_required_key_is_named(tmp_path, dataset_name, key):
    root = write_coco_dataset(tmp_path)
    path = edit_json(root, "train", lambda coco: coco["annotations"][1].pop(key))
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert path in message and "annotations[1]" in message and f"without {key!r}" in message


def test_missing_image_file_is_named(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    os.remove(root / "images" / "train" / "train_1.jpg")
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert str(root / "images" / "train" / "train_1.jpg") in message


def test_unknown_category_id_is_named(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    path = edit_json(root, "val", lambda coco: coco["annotations"][0].update(category_id=5))
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert path in message and "category_id 5" in message and "[3, 7]" in message


@pytest.mark.parametrize(
    "box", [[30, 3, 10.0 + 1.5, 8], [2, 25, 10, 5 + 1.5], [-2, 0, 5, 5], [0, 0, -1, 5]]
)
def test_box_outside_the_image_is_named(tmp_path, dataset_name, box):
    root = write_coco_dataset(tmp_path)
    path = edit_json(root, "train", lambda coco: coco["annotations"][0].update(bbox=box))
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert path in message and "annotations[0] (id 1)" in message and str(box) in message
    assert "40x30" in message


def test_box_overshooting_by_less_than_the_tolerance_is_accepted(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    edit_json(
        root,
        "train",
        lambda coco: coco["annotations"][0].update(bbox=[30, 3, 10 + BOX_TOLERANCE, 8]),
    )
    assert register_folder_dataset(dataset_name, str(root))


def test_splits_with_different_categories_are_an_error(tmp_path, dataset_name):
    root = write_coco_dataset(tmp_path)
    path = edit_json(root, "val", lambda coco: coco["categories"].append({"id": 9, "name": "cow"}))
    message = error_message(register_folder_dataset, dataset_name, str(root))
    assert path in message and "cow" in message


@pytest.mark.timeout(600)
def test_train_net_trains_and_evaluates_a_coco_folder_with_its_own_classes(tmp_path, datasets_dir):
    root = write_coco_dataset(tmp_path / "pets")
    out = str(tmp_path / "out")
    overrides = tiny_overrides(out, max_iter=2, **{"model.test_score_thresh": 0.001})
    overrides += [
        "dataloader.train.dataset.names=pets_train",
        "dataloader.test.dataset.names=pets_val",
    ]
    args = ["--config-file", "configs/Synthetic/retinanet_denseclip_tiny.py"]
    run = run_train_net([*args, "--dataset", f"pets={root}", *overrides], datasets_dir)
    assert run.returncode == 0, run.describe()
    weights = torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["model"]
    assert weights["head.cls_score.weight"].shape[0] == 9 * 2  # 9 anchors x the 2 classes
    assert weights["backbone.top_block.p6.weight"].shape[1] == 16 * 32 + 2
    results = eval_results(out)
    assert results is not None and {"AP-cat", "AP-dog"} <= set(results["bbox"]), run.describe()


# ---------------------------------------------------------------------------------- synthetic


def read_instances(root, split):
    with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
        return json.load(f)


def test_synthetic_detection_writes_the_coco_layout(tmp_path):
    root = write_synthetic_detection(tmp_path / "det", **SMALL)
    for split, count in (("train", 3), ("val", 2)):
        coco = read_instances(root, split)
        assert [c["name"] for c in coco["categories"]] == list(SYNTHETIC_DET_CLASSES)
        assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
        assert len(coco["images"]) == count
        for image in coco["images"]:
            assert os.path.isfile(os.path.join(root, "images", split, image["file_name"]))
            assert (image["height"], image["width"]) == (48, 64)
        assert {a["image_id"] for a in coco["annotations"]} == {i["id"] for i in coco["images"]}


def test_synthetic_boxes_enclose_their_rle_masks(tmp_path):
    root = write_synthetic_detection(tmp_path / "det", **SMALL)
    for annotation in read_instances(root, "train")["annotations"]:
        mask = mask_util.decode(annotation["segmentation"])
        assert mask.shape == (48, 64) and annotation["area"] == mask.sum() >= 16
        ys, xs = np.nonzero(mask)
        x, y, w, h = annotation["bbox"]
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


@pytest.mark.parametrize("index", range(8))
def test_synthetic_instances_are_the_visible_parts_of_the_shapes(index):
    """Compared with the segmentation labels of the same image (class ids: shapes 2..4 =
    category ids 1..3 + 1; 255 on anti-aliased edges): each instance covers only pixels of its
    class or edges, and every pixel a shape wholly covers is in an instance of its class."""
    image, instances = synthetic.generate_instances(0, 0, index, (128, 128))
    masks = np.stack([instance["mask"] for instance in instances])
    assert masks.sum(axis=0).max() == 1  # no pixel in two instances
    assert {instance["category_id"] for instance in instances} <= {1, 2, 3}
    same_image, labels = synthetic.generate_sample(0, 0, index, (128, 128))
    assert np.array_equal(image, same_image)
    for category_id in (1, 2, 3):
        shape = labels == category_id + 1
        of_class = [x["mask"] for x in instances if x["category_id"] == category_id]
        for mask in of_class:
            assert np.isin(labels[mask], [category_id + 1, 255]).all()
            assert shape[mask].mean() > 0.5  # the edges are a thin part
        union = np.any(of_class, axis=0) if of_class else np.zeros_like(shape)
        assert np.array_equal(union & shape, shape)


def test_synthetic_detection_has_the_segmentation_images(tmp_path):
    det = write_synthetic_detection(tmp_path / "det", **SMALL)
    seg = write_synthetic_segmentation(tmp_path / "seg", **SMALL)
    for name in ("train/train_00002.png", "val/val_00001.png"):
        with open(os.path.join(det, "images", name), "rb") as a:
            with open(os.path.join(seg, "images", name), "rb") as b:
                assert a.read() == b.read()


def test_synthetic_detection_refuses_a_segmentation_dataset_folder(tmp_path):
    write_synthetic_segmentation(tmp_path / "d", **SMALL)
    with pytest.raises(FileExistsError, match="coco_instances"):
        write_synthetic_detection(tmp_path / "d", **SMALL)


def test_builtin_synthetic_detection_is_generated_lazily_under_env_root(
    datasets_dir, synthetic_datasets
):
    meta = MetadataCatalog.get("synthetic_det_val")
    assert meta.thing_classes == meta.class_prompts == list(SYNTHETIC_DET_CLASSES)
    assert meta.evaluator_type == "coco"
    dicts = DatasetCatalog.get("synthetic_det_val")
    root = os.path.join(str(datasets_dir), "synthetic_det")
    assert len(dicts) == 64 and all(d["annotations"] for d in dicts)
    assert dicts[0]["file_name"].startswith(os.path.join(root, "images", "val"))
    assert meta.json_file == os.path.join(root, "annotations", "instances_val.json")
