"""Image files as users have them (denseclip.data.image_io, DenseCLIPDatasetMapper, tools/demo.py):
greyscale, greyscale + alpha, RGBA, palette, CMYK, 16-bit greyscale, EXIF-rotated photos are
read upright in 8 bits; truncated or foreign files are named. Every image is written here by
PIL."""

import logging
import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import detection_utils as d2_utils
from detectron2.data import transforms as T
from detectron2.data.detection_utils import SizeMismatchError
from helpers import REPO_ROOT, TINY_CONFIG, load_python_file

from denseclip.data import (
    DatasetFormatError,
    DenseCLIPDatasetMapper,
    ImageReadError,
    image_size,
    read_image,
    register_folder_dataset,
)
from denseclip.data.image_io import to_8bit

EXIF_ORIENTATION = 0x0112
#: 4 colours (exact in a palette), an asymmetric 4×6 layout so that turns and mirrors show.
COLOURS = np.array([[200, 30, 10], [20, 180, 60], [10, 40, 220], [250, 250, 0]], np.uint8)
LAYOUT = np.array([[0, 0, 1, 1, 1, 2], [0, 3, 1, 1, 2, 2], [3, 3, 3, 1, 2, 2], [3, 3, 0, 0, 0, 2]])


@pytest.fixture(scope="module")
def rgb():
    """4×6×3 uint8 RGB test picture."""
    return COLOURS[LAYOUT]


def _blocks(rgb, block=8):
    """The picture with every pixel an 8×8 block (JPEG keeps flat 8×8 blocks nearly exact)."""
    return np.repeat(np.repeat(rgb, block, axis=0), block, axis=1)


def _block_means(image, block=8):
    h, w, c = image.shape
    return image.reshape(h // block, block, w // block, block, c).mean(axis=(1, 3))


def _save(image: Image.Image, path, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif


# ----------------------------------------------------------------------------- the reader


@pytest.mark.parametrize("fmt", ["RGB", "BGR"])
@pytest.mark.parametrize("mode", ["RGB", "L", "LA", "RGBA", "P"])
def test_8bit_png_modes_are_read_as_detectron2_reads_them(rgb, tmp_path, mode, fmt):
    image = Image.fromarray(rgb)
    image = image.quantize(4) if mode == "P" else image.convert(mode)
    path = _save(image, tmp_path / "image.png")
    ours = read_image(path, fmt)
    assert ours.dtype == np.uint8 and ours.shape == (4, 6, 3)
    np.testing.assert_array_equal(ours, d2_utils.read_image(path, fmt))
    expected = np.asarray(Image.fromarray(rgb).convert("L")) if mode in ("L", "LA") else None
    if expected is not None:  # greyscale: the grey value in every channel
        np.testing.assert_array_equal(ours, np.repeat(expected[:, :, None], 3, axis=2))
    else:  # colour, palette colours and RGBA (alpha dropped) keep their RGB values
        np.testing.assert_array_equal(ours, rgb if fmt == "RGB" else rgb[:, :, ::-1])


def test_cmyk_jpeg_is_read_in_rgb(rgb, tmp_path):
    path = _save(Image.fromarray(_blocks(rgb)).convert("CMYK"), tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    ours = read_image(path, "RGB")
    np.testing.assert_array_equal(ours, d2_utils.read_image(path, "RGB"))
    np.testing.assert_allclose(_block_means(ours), rgb, atol=12)


def test_16bit_greyscale_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65535]], np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "scan.png")
    assert Image.open(path).mode == "I;16"
    expected = np.array([0, 1, 3, 128, 255], np.uint8)  # the high byte, v >> 8
    image = read_image(path, "RGB")
    assert image.shape == (1, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[0, :, channel], expected)
    # as OpenCV (mmcv, the official reader) reads it
    np.testing.assert_array_equal(image[:, :, ::-1], cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert d2_utils.read_image(path, "RGB")[0, 2, 0] == 255  # detectron2 clips 1000 to white


def test_32bit_integer_greyscale_is_clipped_to_16_bits_then_scaled():
    values = np.array([[-5, 0, 257, 65535, 70000]], np.int32)
    image = to_8bit(Image.fromarray(values))
    assert image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), [[0, 0, 1, 255, 255]])


@pytest.mark.parametrize(
    "orientation, upright",
    [
        (2, lambda a: a[:, ::-1]),  # mirrored
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, -1)),  # turned 90° clockwise to display
        (8, lambda a: np.rot90(a, 1)),
    ],
)
def test_exif_orientation_is_applied(rgb, tmp_path, orientation, upright):
    path = _save(Image.fromarray(rgb), tmp_path / "photo.png", exif=_exif(orientation))
    image = read_image(path, "RGB")
    np.testing.assert_array_equal(image, upright(rgb))
    assert image_size(path) == image.shape[:2]


def test_exif_rotated_jpeg_is_read_upright(rgb, tmp_path):
    path = _save(
        Image.fromarray(_blocks(rgb)),
        tmp_path / "phone.jpg",
        quality=95,
        subsampling=0,
        exif=_exif(6),
    )
    image = read_image(path, "RGB")
    assert image.shape == (48, 32, 3) and image_size(path) == (48, 32)
    np.testing.assert_allclose(_block_means(image), np.rot90(rgb, -1), atol=8)
    np.testing.assert_array_equal(image, d2_utils.read_image(path, "RGB"))


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory, rgb):
    """{kind: path} of a JPEG and a PNG cut in half, and a text file named .jpg."""
    folder = tmp_path_factory.mktemp("broken")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    files = {}
    for ext in ("jpg", "png"):
        whole = _save(Image.fromarray(noise), folder / f"whole.{ext}")
        with open(whole, "rb") as f:
            data = f.read()
        files[f"truncated {ext}"] = str(folder / f"truncated.{ext}")
        with open(files[f"truncated {ext}"], "wb") as f:
            f.write(data[: len(data) // 2])
    files["not an image"] = str(folder / "notes.jpg")
    with open(files["not an image"], "w") as f:
        f.write("shopping list")
    return files


@pytest.mark.parametrize("kind", ["truncated jpg", "truncated png", "not an image"])
def test_unreadable_files_raise_an_error_naming_the_file(broken_files, kind):
    path = broken_files[kind]
    with pytest.raises(ImageReadError, match=f"cannot read image {path}"):
        read_image(path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image(str(tmp_path / "missing.png"))


def test_image_size_reads_only_the_header(broken_files):
    assert image_size(broken_files["truncated jpg"]) == (64, 64)
    with pytest.raises(ImageReadError, match="notes.jpg"):
        image_size(broken_files["not an image"])


# ----------------------------------------------------------------------------- the mapper


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An 8-bit RGB image 40×56, its label image and a 16-bit greyscale image of the same size."""
    folder = tmp_path_factory.mktemp("mapper")
    rng = np.random.default_rng(1)
    paths = {
        "image": _save(
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)),
            folder / "image.png",
        ),
        "label": _save(
            Image.fromarray(rng.integers(0, 4, (40, 56), dtype=np.uint8)), folder / "label.png"
        ),
        "scan": _save(
            Image.fromarray(np.full((40, 56), 771, np.uint16)),  # 771 >> 8 = 3
            folder / "scan.png",
        ),
    }
    return paths


def _record(files, image="image", **extra):
    return {"file_name": files[image], "height": 40, "width": 56, "image_id": 0, **extra}


def _annotations():
    square = [10.0, 8.0, 30.0, 8.0, 30.0, 28.0, 10.0, 28.0]
    return [
        {"bbox": [10, 8, 20, 20], "bbox_mode": 1, "category_id": 2, "segmentation": [square]},
        {"bbox": [30, 2, 12, 9], "bbox_mode": 1, "category_id": 0, "segmentation": []},
    ]


def _mappers(is_train, **kwargs):
    augmentations = [T.ResizeShortestEdge(32, 64), T.RandomFlip(prob=1.0)]
    args = dict(is_train=is_train, augmentations=augmentations, image_format="RGB", **kwargs)
    return DatasetMapper(**args), DenseCLIPDatasetMapper(**args)


@pytest.mark.parametrize("is_train", [True, False])
def test_mapper_maps_segmentation_like_detectron2(files, is_train):
    record = _record(files, sem_seg_file_name=files["label"])
    theirs, ours = (mapper(record) for mapper in _mappers(is_train))
    assert sorted(ours) == sorted(theirs)
    assert torch.equal(ours["image"], theirs["image"]) and ours["image"].shape == (3, 32, 45)
    assert torch.equal(ours["sem_seg"], theirs["sem_seg"])


def test_mapper_maps_instances_like_detectron2(files):
    record = _record(files, annotations=_annotations())
    theirs, ours = (mapper(record) for mapper in _mappers(True, use_instance_mask=True))
    assert sorted(ours) == sorted(theirs)
    assert torch.equal(ours["image"], theirs["image"])
    mine, reference = ours["instances"], theirs["instances"]
    assert torch.equal(mine.gt_boxes.tensor, reference.gt_boxes.tensor)
    assert torch.equal(mine.gt_classes, reference.gt_classes)
    assert mine.gt_masks.polygons[0][0].tolist() == reference.gt_masks.polygons[0][0].tolist()


def test_mapper_scales_16bit_images(files):
    mapper = DenseCLIPDatasetMapper(is_train=False, augmentations=[], image_format="RGB")
    image = mapper(_record(files, image="scan"))["image"]
    assert image.unique().tolist() == [3]


def test_mapper_names_a_truncated_image(broken_files):
    mapper = DenseCLIPDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    path = broken_files["truncated png"]
    with pytest.raises(ImageReadError, match=f"cannot read image {path}: image file is truncated"):
        mapper({"file_name": path, "height": 64, "width": 64})


def test_mapper_names_the_file_of_a_size_mismatch(files):
    mapper = DenseCLIPDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    with pytest.raises(SizeMismatchError, match=f"{files['image']} .*got \\(56, 40\\)"):
        mapper({"file_name": files["image"], "height": 56, "width": 40})


@pytest.mark.parametrize(
    "config", ["configs/common/data/ade20k_sem_seg.py", "configs/common/data/coco_instance.py"]
)
def test_dataset_configs_read_images_with_the_denseclip_mapper(config):
    from detectron2.config import LazyConfig

    dataloader = LazyConfig.load(os.path.join(REPO_ROOT, config), "dataloader")
    for split in ("train", "test"):  # COCO trains with its mmdet-annotation subclass
        assert issubclass(dataloader[split].mapper._target_, DenseCLIPDatasetMapper), split


@pytest.mark.parametrize("name", ["denseclip_fpn_tiny", "retinanet_denseclip_tiny"])
def test_tiny_configs_read_images_with_the_denseclip_mapper(load_tiny_config, name):
    dataloader = load_tiny_config(name).dataloader
    for split in ("train", "test"):
        assert dataloader[split].mapper._target_ is DenseCLIPDatasetMapper, split


# ----------------------------------------------------------------------------- folder datasets


def _segmentation_folder(root, image_writer):
    """A one-image-per-split segmentation folder; ``image_writer(path)`` writes each image and
    returns its upright (height, width), which the label takes."""
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("sky\nsea\n")
    for split in ("train", "val"):
        os.makedirs(os.path.join(root, "images", split))
        os.makedirs(os.path.join(root, "annotations", split))
        height, width = image_writer(os.path.join(root, "images", split, "a.jpg"))
        labels = np.zeros((height, width), np.uint8)
        labels[height // 2 :] = 1
        Image.fromarray(labels).save(os.path.join(root, "annotations", split, "a.png"))
    return root


def test_folder_dataset_takes_exif_rotated_photos_with_upright_labels(rgb, tmp_path, dataset_name):
    def phone_photo(path):
        _save(
            Image.fromarray(_blocks(rgb)), path, quality=95, subsampling=0, exif=_exif(6)
        )  # 32×48 stored
        return 48, 32

    root = _segmentation_folder(str(tmp_path), phone_photo)
    register_folder_dataset(dataset_name, root)
    (record,) = DatasetCatalog.get(f"{dataset_name}_train")
    assert (record["height"], record["width"]) == (48, 32)
    mapper = DenseCLIPDatasetMapper(is_train=True, augmentations=[], image_format="RGB")
    mapped = mapper(record)
    assert mapped["image"].shape == (3, 48, 32) and mapped["sem_seg"].shape == (48, 32)


def test_folder_dataset_names_an_image_that_is_not_one(tmp_path, dataset_name):
    def text_file(path):
        with open(path, "w") as f:
            f.write("not a picture")
        return 4, 4

    root = _segmentation_folder(str(tmp_path), text_file)
    register_folder_dataset(dataset_name, root)
    image = os.path.join(root, "images", "train", "a.jpg")
    with pytest.raises(DatasetFormatError, match=f"image {image}: expected an image file"):
        DatasetCatalog.get(f"{dataset_name}_train")


# ----------------------------------------------------------------------------- tools/demo.py


def test_demo_reads_16bit_and_rotated_photos_and_skips_unreadable_files_with_a_warning(
    rgb, broken_files, tmp_path
):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    Image.fromarray(np.full((4, 6), 40000, np.uint16)).save(inputs / "scan.png")
    _save(Image.fromarray(_blocks(rgb)), inputs / "phone.jpg", exif=_exif(6))
    with open(broken_files["truncated jpg"], "rb") as f:
        (inputs / "cut.jpg").write_bytes(f.read())
    output = tmp_path / "out"
    demo = load_python_file("tools/demo.py")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("detectron2").addHandler(handler)
    try:
        with pytest.raises(SystemExit) as exit_status:
            demo.main(
                ["--config-file", os.path.join(REPO_ROOT, TINY_CONFIG), "--weights", ""]
                + ["--input", str(inputs), "--output", str(output)]
            )
    finally:
        logging.getLogger("detectron2").removeHandler(handler)
    cut = str(inputs / "cut.jpg")
    assert f"1 of 3 images could not be read and were skipped: {cut}" in str(exit_status.value)
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any(f"skipped: cannot read image {cut}" in w for w in warnings), warnings
    written = sorted(os.listdir(output))
    assert written == ["phone.png", "scan.png"]
    assert np.asarray(Image.open(output / "phone.png")).shape[:2] == (48, 32)  # upright
