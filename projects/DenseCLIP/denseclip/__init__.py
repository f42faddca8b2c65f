"""DenseCLIP for Detectron2."""
