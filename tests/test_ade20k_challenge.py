"""Specification of reading ADE20K as the official ``ADEChallengeData2016.zip`` extracts it: the
labels as mmseg 0.19 reads them (``reduce_zero_label``), in training and in evaluation, from a
small fake tree in the official layout."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog

from denseclip.data import ADE20K_CLASSES, register_ade20k_challenge
from denseclip.data.availability import DatasetUnavailableError, check_datasets_available
from denseclip.data.image_io import reduce_zero_label

from helpers import REPO_ROOT

DATA_CONFIG = os.path.join(REPO_ROOT, "configs", "common", "data", "ade20k_sem_seg.py")


def mmseg_reduce_zero_label(gt: np.ndarray) -> np.ndarray:
    """mmseg 0.19 ``LoadAnnotations`` with ``reduce_zero_label=True``, written out as it is."""
    gt = gt.copy()
    gt[gt == 0] = 255
    gt = gt - 1
    gt[gt == 254] = 255
    return gt


def _write_tree(root, split, count, seed):
    """``count`` images with labels 0..150 (0 = "other") in the official layout."""
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(count):
        stem = f"ADE_{split}_{i:08d}"
        os.makedirs(os.path.join(root, "images", split), exist_ok=True)
        os.makedirs(os.path.join(root, "annotations", split), exist_ok=True)
        image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        label = rng.integers(0, 151, (24, 32), dtype=np.uint8)
        label[0, :4] = 0
        label[1, :4] = 150
        Image.fromarray(image).save(os.path.join(root, "images", split, stem + ".jpg"))
        Image.fromarray(label).save(os.path.join(root, "annotations", split, stem + ".png"))
        labels[stem] = label
    return labels


@pytest.fixture(scope="module")
def challenge(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("ADEChallengeData2016"))
    labels = {
        "train": _write_tree(root, "training", 3, seed=0),
        "val": _write_tree(root, "validation", 2, seed=1),
    }
    register_ade20k_challenge(root, prefix="fake_ade")
    return root, labels


def test_reduce_zero_label_is_mmsegs():
    labels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(reduce_zero_label(labels), mmseg_reduce_zero_label(labels))
    wide = labels.astype(np.int64)
    np.testing.assert_array_equal(reduce_zero_label(wide), mmseg_reduce_zero_label(labels))


def test_the_extracted_tree_registers_with_mmsegs_class_names(challenge):
    assert len(DatasetCatalog.get("fake_ade_train")) == 3
    assert len(DatasetCatalog.get("fake_ade_val")) == 2
    metadata = MetadataCatalog.get("fake_ade_val")
    assert metadata.stuff_classes == list(ADE20K_CLASSES)
    assert metadata.ignore_label == 255 and metadata.reduce_zero_label


def test_the_training_mapper_reads_labels_as_mmseg(challenge):
    _, labels = challenge
    cfg = LazyConfig.load(DATA_CONFIG)
    mapper_cfg = cfg.dataloader.test.mapper
    mapper_cfg.augmentations = []  # no resize: the labels as read
    mapper = instantiate(mapper_cfg)
    for record in DatasetCatalog.get("fake_ade_train"):
        stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
        mapped = mapper(record)
        expected = mmseg_reduce_zero_label(labels["train"][stem])
        assert torch.equal(mapped["sem_seg"], torch.as_tensor(expected.astype("long")))
        assert mapped["sem_seg"][0, :4].eq(255).all() and mapped["sem_seg"][1, :4].eq(149).all()


def test_evaluation_reads_the_same_labels(challenge):
    """The config's evaluator scores a prediction equal to mmseg's labels 100 mIoU; one that
    ignores the reduction (the raw file's ids) does not."""
    _, labels = challenge
    cfg = LazyConfig.load(DATA_CONFIG)
    cfg.dataloader.test.dataset.names = "fake_ade_val"
    records = DatasetCatalog.get("fake_ade_val")

    def evaluate(predict):
        evaluator = instantiate(cfg.dataloader.evaluator)
        evaluator.reset()
        for record in records:
            stem = os.path.splitext(os.path.basename(record["file_name"]))[0]
            predicted = predict(labels["val"][stem])
            logits = torch.nn.functional.one_hot(torch.as_tensor(predicted.astype("long")), 256)
            evaluator.process([record], [{"sem_seg": logits[..., :150].permute(2, 0, 1).float()}])
        return evaluator.evaluate()["sem_seg"]

    assert evaluate(mmseg_reduce_zero_label)["pACC"] == pytest.approx(100.0)
    assert evaluate(lambda raw: raw)["pACC"] < 10.0


def test_a_missing_tree_is_named_with_the_download_and_no_preparation_step():
    image_root = MetadataCatalog.get("ade20k_challenge_train").image_root
    if os.path.exists(image_root):
        pytest.skip(f"{image_root} exists on this machine")
    with pytest.raises(DatasetUnavailableError) as error:
        check_datasets_available({"dataloader.train.dataset.names": "ade20k_challenge_train"})
    message = str(error.value)
    assert image_root in message and "ADEChallengeData2016.zip" in message
    assert "prepare_ade20k_sem_seg.py" not in message


def test_the_default_challenge_datasets_are_registered_on_import():
    assert {"ade20k_challenge_train", "ade20k_challenge_val"} <= set(DatasetCatalog.list())
    assert MetadataCatalog.get("ade20k_challenge_train").reduce_zero_label
