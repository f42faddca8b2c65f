"""Detectron2 checkpointer that adapts CLIP positional embeddings to the model."""

import logging
import math
from typing import Dict

import torch
from torch.nn import functional as F

from detectron2.checkpoint import DetectionCheckpointer

__all__ = ["DenseCLIPCheckpointer", "adapt_positional_embeddings"]

logger = logging.getLogger(__name__)


def _resize_grid_embedding(embedding: torch.Tensor, rows: int) -> torch.Tensor:
    """(1 + S²)×C → (1 + T²)×C, the S×S grid resized bilinearly to T×T, first row kept."""
    src, dst = math.isqrt(embedding.shape[0] - 1), math.isqrt(rows - 1)
    if src * src + 1 != embedding.shape[0] or dst * dst + 1 != rows:
        raise ValueError(
            f"positional embedding of {embedding.shape[0]} rows cannot be resized to {rows}: "
            "both must be 1 + a square"
        )
    channels = embedding.shape[1]
    grid = embedding[1:].reshape(1, src, src, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(dst, dst), mode="bilinear", align_corners=False)
    return torch.cat([embedding[:1], grid.permute(0, 2, 3, 1).reshape(dst * dst, channels)])


def adapt_positional_embeddings(
    checkpoint: Dict[str, torch.Tensor], model_state: Dict[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """Makes CLIP positional embeddings fit the model, as the official code does on loading.

    Image encoders (keys containing ``image_encoder.``): the grid is resized bilinearly to the
    stored size (e.g. 7×7 → 16×16 for RN50 at 512²). Text encoders (``text_encoder.``): the rows
    are truncated to the context length (77 → 13). Other keys are returned unchanged.
    """
    adapted = dict(checkpoint)
    for key, value in checkpoint.items():
        if not key.endswith("positional_embedding") or key not in model_state:
            continue
        target = model_state[key].shape
        if value.shape == target:
            continue
        if "image_encoder." in key and value.shape[1:] == target[1:]:
            adapted[key] = _resize_grid_embedding(value, target[0])
        elif (
            "text_encoder." in key and value.shape[1:] == target[1:] and value.shape[0] > target[0]
        ):
            adapted[key] = value[: target[0]]
        else:
            continue
        logger.info(f"Adapted {key} from {tuple(value.shape)} to {tuple(target)}")
    return adapted


class DenseCLIPCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` that adapts positional embeddings before loading."""

    def _load_model(self, checkpoint):
        checkpoint["model"] = adapt_positional_embeddings(
            checkpoint["model"], self.model.state_dict()
        )
        return super()._load_model(checkpoint)
