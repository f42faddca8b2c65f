"""Inference around the model: the image predictor, BatchNorm folding and pictures."""

from .predictor import ImagePipeline, Predictor

__all__ = ["ImagePipeline", "Predictor"]
