"""DenseCLIP for Detectron2."""

from .inference import Predictor

__all__ = ["Predictor"]
