"""Pictures of semantic segmentation results."""

from typing import Optional, Sequence

import numpy as np

from detectron2.data import Metadata
from detectron2.utils.visualizer import Visualizer

__all__ = ["draw_sem_seg", "side_by_side"]


def draw_sem_seg(image_rgb: np.ndarray, labels: np.ndarray, metadata: Metadata) -> np.ndarray:
    """H×W×3 uint8 RGB image + H×W class ids → H×W×3 RGB picture with named regions."""
    visualizer = Visualizer(image_rgb, metadata)
    return visualizer.draw_sem_seg(labels, alpha=0.6).get_image()


def side_by_side(
    rows: Sequence[Sequence[np.ndarray]], gap: int = 4, background: Optional[int] = 255
) -> np.ndarray:
    """Tiles a grid of equally sized H×W×3 pictures with ``gap`` pixels between them."""
    height, width = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.full(
        (len(rows) * (height + gap) - gap, cols * (width + gap) - gap, 3), background, np.uint8
    )
    for i, row in enumerate(rows):
        for j, picture in enumerate(row):
            y, x = i * (height + gap), j * (width + gap)
            canvas[y : y + height, x : x + width] = picture
    return canvas
