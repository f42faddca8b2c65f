"""Specification of the score-map pictures (``denseclip.inference.visualization``, ``tools/demo.py
--score-maps``): panels, titles, the shared colour scale and the legend."""

import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO_ROOT
from helpers import load_python_file

from detectron2.data import Metadata

from denseclip import Predictor
from denseclip.data import SYNTHETIC_CLASSES
from denseclip.data.synthetic import generate_sample
from denseclip.inference.visualization import (
    class_legend,
    paint_labels,
    save_figure,
    score_map_figure,
    score_map_panels,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_tiny.py")
BASELINE_CONFIG = os.path.join(REPO_ROOT, "configs/Synthetic/fpn_clip_tiny.py")


@pytest.fixture(scope="module")
def predictor():
    """The tiny DenseCLIP with seeded random weights (the pictures' layout needs no training)."""
    torch.manual_seed(0)
    return Predictor(TINY_CONFIG, "")


@pytest.fixture(scope="module")
def image_bgr():
    return generate_sample(seed=0, split_index=1, index=0, image_size=(96, 128))[0]


def picture(value: int) -> np.ndarray:
    return np.full((6, 8, 3), value, np.uint8)


def titles(figure, row: int, num_cols: int):
    return [ax.get_title() for ax in figure.axes[row * num_cols : (row + 1) * num_cols]]


def test_paint_labels_blends_class_colours_and_leaves_ignored_pixels():
    image = np.full((1, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 255]])
    painted = paint_labels(image, labels, [[200, 0, 0], [0, 0, 250]], alpha=0.5)
    assert painted.tolist() == [[[150, 50, 50], [50, 50, 175], [100, 100, 100]]]
    assert painted.dtype == np.uint8


def test_figure_has_a_panel_per_entry_and_column_titles_once():
    rows = [
        [("image", picture(0)), ("sky", np.zeros((6, 8))), ('"blue circle"', np.ones((6, 8)))],
        [("image", picture(9)), ("sky", np.zeros((6, 8))), ('"blue circle"', np.ones((6, 8)))],
    ]
    figure = score_map_figure(rows)
    assert titles(figure, 0, 3) == ["image", "sky", '"blue circle"']
    assert titles(figure, 1, 3) == ["", "", ""]  # same as the row above: not repeated
    assert np.array_equal(figure.axes[3].get_images()[0].get_array(), picture(9))


def test_figure_titles_a_panel_whose_title_differs_from_the_one_above():
    rows = [
        [("image", picture(0)), ("wall", np.zeros((6, 8)))],
        [("image", picture(0)), ("floor", np.zeros((6, 8)))],
    ]
    assert titles(score_map_figure(rows), 1, 2) == ["", "floor"]


def test_score_maps_share_one_symmetric_colour_scale_with_a_colour_bar():
    rows = [[("image", picture(0)), ("a", np.full((6, 8), 0.25)), ("b", np.full((6, 8), -0.5))]]
    figure = score_map_figure(rows)
    limits = [ax.get_images()[0].get_clim() for ax in figure.axes[1:3]]
    assert limits == [(-0.5, 0.5), (-0.5, 0.5)]
    assert len(figure.axes) == 4  # 3 panels + the colour bar
    assert figure.axes[3].get_ylabel() == "pixel-text cosine score"


def test_figure_draws_the_legend_entries():
    legend = [("sky", (0.2, 0.4, 0.8)), ("grass", (0.1, 0.6, 0.1))]
    figure = score_map_figure([[("image", picture(0))]], legend)
    (drawn,) = figure.legends
    assert [text.get_text() for text in drawn.get_texts()] == ["sky", "grass"]


def test_figure_rows_may_differ_in_length():
    rows = [[("image", picture(0)), ("a", np.zeros((6, 8)))], [("image", picture(0))]]
    figure = score_map_figure(rows)
    assert len(figure.axes) == 2 * 2 + 1
    assert not figure.axes[3].get_images()  # the missing panel stays empty


def test_save_figure_writes_a_palette_png_of_at_most_max_colors(tmp_path):
    gradient = np.linspace(-1, 1, 64 * 64).reshape(64, 64)
    figure = score_map_figure([[("image", picture(0)), ("map", gradient)]])
    save_figure(figure, str(tmp_path / "full.png"))
    save_figure(figure, str(tmp_path / "palette.png"), max_colors=16)
    full, palette = Image.open(tmp_path / "full.png"), Image.open(tmp_path / "palette.png")
    assert palette.mode == "P" and palette.size == full.size
    assert len(palette.getcolors()) <= 16 < len(full.convert("RGB").getcolors(1 << 16))


def test_class_legend_lists_the_classes_present_with_their_colours():
    metadata = Metadata(
        stuff_classes=["a", "b", "c"], stuff_colors=[[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    )
    assert class_legend(metadata) == [
        ("a", (1.0, 0.0, 0.0)),
        ("b", (0.0, 1.0, 0.0)),
        ("c", (0.0, 0.0, 1.0)),
    ]
    labels = np.array([[2, 255], [0, 2]])
    assert [name for name, _ in class_legend(metadata, [labels])] == ["a", "c"]
    assert class_legend(Metadata(stuff_classes=["a"])) == []  # no colours: no legend


def test_panels_are_the_class_maps_then_the_quoted_prompts(predictor, image_bgr):
    panels = score_map_panels(predictor, image_bgr, ["blue circle"])
    assert [title for title, _ in panels] == list(SYNTHETIC_CLASSES) + ['"blue circle"']
    expected = predictor.score_maps(image_bgr, list(SYNTHETIC_CLASSES) + ["blue circle"])
    np.testing.assert_allclose(np.stack([m for _, m in panels]), expected.numpy(), atol=1e-6)
    assert panels[0][1].shape == image_bgr.shape[:2]


def test_panels_keep_the_classes_peaking_highest_when_there_are_too_many(predictor, image_bgr):
    peaks = predictor.score_maps(image_bgr, list(SYNTHETIC_CLASSES)).flatten(1).max(dim=1).values
    highest = [SYNTHETIC_CLASSES[k] for k in peaks.argsort(descending=True)[:2]]
    panels = score_map_panels(predictor, image_bgr, ["red"], max_classes=2)
    assert [title for title, _ in panels] == highest + ['"red"']


def run_demo_tool(args, tmp_path, image_bgr):
    cv2.imwrite(str(tmp_path / "a.png"), image_bgr)
    argv = ["--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "out")]
    load_python_file("tools/demo.py").main(argv + args)
    return cv2.imread(str(tmp_path / "out" / "a.png"))


def test_demo_tool_draws_score_maps_of_classes_and_texts(tmp_path, image_bgr):
    args = ["--config-file", TINY_CONFIG, "--weights", "", "--score-maps", "blue circle", "red"]
    drawn = run_demo_tool(args, tmp_path, image_bgr)
    # one row: image | prediction | 5 class maps | 2 text maps, panels 2.5 in at 100 dpi
    assert drawn.shape[1] >= 9 * 250 and drawn.shape[0] < 2 * 250 * 96 / 128 + 100, drawn.shape


def test_demo_tool_refuses_score_maps_of_a_model_without_text_side(tmp_path, image_bgr, capsys):
    args = ["--config-file", BASELINE_CONFIG, "--weights", "", "--score-maps"]
    with pytest.raises(SystemExit):
        run_demo_tool(args, tmp_path, image_bgr)
    error = capsys.readouterr().err
    assert "--score-maps needs a DenseCLIP model" in error and "fpn_clip_tiny.py" in error, error


def test_demo_tool_refuses_score_maps_of_an_exported_model(tmp_path, image_bgr, capsys):
    args = ["--config-file", TINY_CONFIG, "--exported", "model.onnx", "--score-maps", "red"]
    with pytest.raises(SystemExit):
        run_demo_tool(args, tmp_path, image_bgr)
    assert "--score-maps needs the model's text encoder" in capsys.readouterr().err
