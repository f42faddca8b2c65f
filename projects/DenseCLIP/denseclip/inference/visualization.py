"""Pictures of segmentation results and of DenseCLIP's pixel-text score maps.

A score-map figure is a grid: one row per image, each row a list of titled panels, e.g.

    image | ground truth | prediction | sky | grass | ... | "blue circle"

where the first panels are pictures (H×W×3 RGB) and the others score maps (H×W cosine
similarities between each pixel embedding and a text embedding), all maps drawn on one
symmetric colour scale with a colour bar, and the segmentation classes in a colour legend.
"""

from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from detectron2.data import Metadata

__all__ = [
    "MAP_COLORMAP",
    "class_legend",
    "paint_labels",
    "save_figure",
    "score_map_figure",
    "score_map_panels",
]

#: A titled panel: an H×W×3 uint8 RGB picture or an H×W float score map.
Panel = Tuple[str, np.ndarray]

#: Diverging: text-similar pixels red, dissimilar blue, cosine 0 white.
MAP_COLORMAP = "RdBu_r"

# score_map_figure's layout, in inches: panel spacing, a title above each row of panels, the
# colour bar with its ticks and label at the right, the legend at the bottom.
_GAP_INCHES = 0.05
_TITLE_INCHES = 0.25
_BAR_INCHES = 0.75
_LEGEND_INCHES = 0.3


def paint_labels(
    image_rgb: np.ndarray, labels: np.ndarray, colors: Sequence[Sequence[int]], alpha: float = 0.6
) -> np.ndarray:
    """H×W×3 uint8 RGB image + H×W class ids → H×W×3 uint8 RGB picture, each pixel of class k
    blended with ``colors[k]`` (RGB 0..255) at opacity ``alpha``; ids without a colour (the
    ignore label 255) leave the image as it is. No names are written: a figure's legend
    (:func:`class_legend`) tells the colours apart."""
    palette = np.asarray(colors, np.float32)
    known = labels < len(palette)
    picture = image_rgb.astype(np.float32)
    picture[known] = (1 - alpha) * picture[known] + alpha * palette[labels[known]]
    return np.round(picture).astype(np.uint8)


def score_map_panels(
    predictor, image: np.ndarray, prompts: Sequence[str] = (), max_classes: int = 8
) -> List[Panel]:
    """The score maps of the model's classes and of free-text ``prompts`` on one image.

    Args:
        predictor: a :class:`denseclip.Predictor` of a DenseCLIP model (free text needs its text
            encoder: ``predictor.encodes_free_text``).
        image: H×W×3 in ``predictor.input_format``.
        prompts: free texts (each ≤ 3 BPE tokens with the default class-name slot).
        max_classes: with more classes than this, only the ``max_classes`` whose maps peak
            highest on this image are shown, highest first (ADE20K has 150).
    Returns:
        ``(class prompt, H×W map)`` per class (the model's own maps,
        ``predictor.class_score_maps``), in class order, then ``('"text"', H×W map)`` per
        prompt: raw cosine similarities in [-1, 1] at the image's resolution.
    """
    classes = predictor.class_prompts
    class_maps = predictor.class_score_maps(image).cpu().numpy()
    shown = range(len(classes))
    if len(classes) > max_classes:
        peaks = class_maps.reshape(len(classes), -1).max(axis=1)
        shown = np.argsort(-peaks, kind="stable")[:max_classes]
    panels = [(classes[k], class_maps[k]) for k in shown]
    if prompts:
        text_maps = predictor.score_maps(image, list(prompts)).cpu().numpy()
        panels += [(f'"{text}"', text_map) for text, text_map in zip(prompts, text_maps)]
    return panels


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
    # A fixed layout in inches (matplotlib's constrained layout takes seconds for 40 panels).
    panel_height = panel_inches * height / width
    row_inches = _TITLE_INCHES + panel_height
    legend_inches = _LEGEND_INCHES if legend else 0.0
    grid_width = num_cols * panel_inches + (num_cols - 1) * _GAP_INCHES
    fig_width = grid_width + (_BAR_INCHES if maps else 0.0)
    fig_height = len(rows) * row_inches + legend_inches
    figure = Figure(figsize=(fig_width, fig_height), dpi=100)
    image = None
    for i, row in enumerate(rows):
        bottom = fig_height - (i + 1) * row_inches
        for j in range(num_cols):
            left = j * (panel_inches + _GAP_INCHES)
            box = [left / fig_width, bottom / fig_height]
            ax = figure.add_axes(box + [panel_inches / fig_width, panel_height / fig_height])
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
                ax.set_title(title, fontsize=9, pad=3)
    if image is not None:
        grid_height = len(rows) * row_inches - _TITLE_INCHES
        bar_box = [(grid_width + 0.1) / fig_width, (legend_inches + 0.1 * grid_height) / fig_height]
        bar_box += [0.12 / fig_width, 0.8 * grid_height / fig_height]
        bar = figure.colorbar(image, cax=figure.add_axes(bar_box))
        bar.set_label("pixel-text cosine score", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    if legend:
        figure.legend(
            handles=[Patch(facecolor=color, label=name) for name, color in legend],
            loc="lower center",
            ncol=len(legend),
            fontsize=8,
            frameon=False,
        )
    return figure


def save_figure(figure: Figure, path: str, max_colors: Optional[int] = None) -> None:
    """Writes ``figure`` to ``path`` (a PNG); with ``max_colors`` (≤ 256) as a palette PNG of
    that many colours (median cut refined by k-means, no dithering): about a quarter of the
    bytes of full colour for score-map figures, for pictures kept in a repository."""
    if max_colors is None:
        figure.savefig(path)
        return
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgb = Image.fromarray(np.asarray(canvas.buffer_rgba())[:, :, :3])
    palette = rgb.quantize(
        max_colors, method=Image.Quantize.MEDIANCUT, kmeans=3, dither=Image.Dither.NONE
    )
    palette.save(path, optimize=True)
