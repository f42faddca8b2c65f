"""Pictures of segmentation results and of DenseCLIP's pixel-text score maps.

A score-map figure is a grid: one row per image, each row a list of titled panels, e.g.

    image | ground truth | prediction | sky | grass | ... | "blue circle"

where the first panels are pictures (H×W×3 RGB) and the others score maps (H×W cosine
similarities between each pixel embedding and a text embedding), all maps drawn on one
symmetric colour scale with a colour bar, and the segmentation classes in a colour legend.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from detectron2.data import Metadata
from detectron2.utils.visualizer import Visualizer

__all__ = [
    "MAP_COLORMAP",
    "class_legend",
    "draw_sem_seg",
    "score_map_figure",
    "score_map_panels",
]

#: A titled panel: an H×W×3 uint8 RGB picture or an H×W float score map.
Panel = Tuple[str, np.ndarray]

#: Diverging: text-similar pixels red, dissimilar blue, cosine 0 white.
MAP_COLORMAP = "RdBu_r"


def draw_sem_seg(image_rgb: np.ndarray, labels: np.ndarray, metadata: Metadata) -> np.ndarray:
    """H×W×3 uint8 RGB image + H×W class ids → H×W×3 RGB picture with named regions."""
    visualizer = Visualizer(image_rgb, metadata)
    return visualizer.draw_sem_seg(labels, alpha=0.6).get_image()


def score_map_panels(
    predictor, image: np.ndarray, prompts: Sequence[str] = (), max_classes: int = 8
) -> List[Panel]:
    """The score maps of the model's classes and of free-text ``prompts`` on one image.

    Args:
        predictor: a :class:`denseclip.Predictor` of a DenseCLIP model.
        image: H×W×3 in ``predictor.input_format``.
        prompts: free texts (each ≤ 3 BPE tokens with the default class-name slot).
        max_classes: with more classes than this, only the ``max_classes`` whose maps peak
            highest on this image are shown, highest first (ADE20K has 150).
    Returns:
        ``(class prompt, H×W map)`` per class, in class order, then ``('"text"', H×W map)`` per
        prompt: raw cosine similarities in [-1, 1] at the image's resolution.
    """
    classes = predictor.class_prompts
    maps = predictor.score_maps(image, list(classes) + list(prompts)).cpu().numpy()
    class_maps, text_maps = maps[: len(classes)], maps[len(classes) :]
    shown = range(len(classes))
    if len(classes) > max_classes:
        peaks = class_maps.reshape(len(classes), -1).max(axis=1)
        shown = np.argsort(-peaks, kind="stable")[:max_classes]
    return [(classes[k], class_maps[k]) for k in shown] + [
        (f'"{text}"', text_map) for text, text_map in zip(prompts, text_maps)
    ]


def class_legend(metadata: Metadata, labels: Sequence[np.ndarray] = ()) -> List[Tuple[str, tuple]]:
    """``(class name, RGB colour in 0..1)`` of the segmentation classes, for a figure's legend.

    Only the classes occurring in ``labels`` (H×W class-id maps) when any are given; none when
    the metadata has no ``stuff_colors`` (detectron2's Visualizer then picks random colours).
    """
    names, colors = metadata.get("stuff_classes"), metadata.get("stuff_colors")
    if not names or not colors:
        return []
    present = range(len(names))
    if len(labels):
        present = np.intersect1d(np.concatenate([np.unique(l) for l in labels]), present)
    return [(names[k], tuple(c / 255 for c in colors[k])) for k in present]


def score_map_figure(
    rows: Sequence[Sequence[Panel]],
    legend: Sequence[Tuple[str, tuple]] = (),
    panel_inches: float = 1.5,
) -> Figure:
    """A grid of titled panels, one row per image (see the module docstring).

    Pictures (H×W×3) are shown as they are; score maps (H×W) on one symmetric colour scale
    shared by the whole figure, explained by a colour bar. A panel is titled when its title
    differs from the one above it, so that repeated column headers appear once.

    Args:
        rows: per image, its ``(title, picture or map)`` panels; rows may differ in length.
        legend: ``(name, RGB colour in 0..1)`` entries drawn below the grid (:func:`class_legend`).
        panel_inches: width of a panel at 100 dpi; its height follows the first panel's aspect.
    Returns:
        a matplotlib Figure (not attached to pyplot): ``figure.savefig(path)`` writes it.
    """
    num_cols = max(len(row) for row in rows)
    maps = [panel for row in rows for _, panel in row if panel.ndim == 2]
    limit = max((float(np.abs(m).max()) for m in maps), default=1.0) or 1.0
    height, width = rows[0][0][1].shape[:2]
    figure = Figure(
        figsize=(
            panel_inches * num_cols + (0.8 if maps else 0.0),
            panel_inches * height / width * len(rows) + 0.3 + (0.35 if legend else 0.0),
        ),
        dpi=100,
        layout="constrained",
    )
    axes = figure.subplots(len(rows), num_cols, squeeze=False)
    image = None
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            ax.set_axis_off()
            if j >= len(row):
                continue
            title, panel = row[j]
            if panel.ndim == 2:
                image = ax.imshow(panel, cmap=MAP_COLORMAP, vmin=-limit, vmax=limit)
            else:
                ax.imshow(panel)
            above = rows[i - 1][j][0] if i > 0 and j < len(rows[i - 1]) else None
            if title != above:
                ax.set_title(title, fontsize=9)
    if image is not None:
        bar = figure.colorbar(image, ax=axes, shrink=0.8, aspect=30, pad=0.01)
        bar.set_label("pixel-text cosine score", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if legend:
        figure.legend(
            handles=[Patch(facecolor=color, label=name) for name, color in legend],
            loc="outside lower center",
            ncol=len(legend),
            fontsize=8,
            frameon=False,
        )
    return figure
