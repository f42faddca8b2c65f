"""DenseCLIP for Detectron2."""

from .predictor import Predictor

__all__ = ["Predictor"]
