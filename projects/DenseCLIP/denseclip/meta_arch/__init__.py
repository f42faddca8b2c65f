"""Meta-architectures registered in detectron2's META_ARCH_REGISTRY."""

from .semantic_segmentor import DenseCLIPSemanticSegmentor, sliding_windows

__all__ = ["DenseCLIPSemanticSegmentor", "sliding_windows"]
