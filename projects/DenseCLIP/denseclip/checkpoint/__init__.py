"""Checkpoint loading and conversion (OpenAI CLIP files → our models)."""

from .checkpointer import DenseCLIPCheckpointer, adapt_positional_embeddings
from .clip import (
    IMAGE_ENCODER_PREFIX,
    TEXT_ENCODER_PREFIX,
    ConversionReport,
    convert_openai_clip,
    load_openai_clip_state_dict,
)

__all__ = [
    "DenseCLIPCheckpointer",
    "adapt_positional_embeddings",
    "IMAGE_ENCODER_PREFIX",
    "TEXT_ENCODER_PREFIX",
    "ConversionReport",
    "convert_openai_clip",
    "load_openai_clip_state_dict",
]
