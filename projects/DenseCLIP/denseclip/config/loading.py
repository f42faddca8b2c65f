"""Helpers that adapt a loaded LazyConfig to the machine and to the dataset."""

from typing import List, Optional, Sequence

import torch
from omegaconf import DictConfig, ListConfig

from detectron2.data import MetadataCatalog

__all__ = ["default_device", "dataset_class_names", "dataset_name_list", "set_class_names"]


def default_device() -> str:
    """ "cuda" when a GPU is visible, else "cpu" (configs use it for ``train.device``)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def dataset_name_list(names) -> List[str]:
    """A config's dataset ``names`` (one name or a list) as a list."""
    return [names] if isinstance(names, str) else list(names)


def dataset_class_names(dataset_names) -> Optional[List[str]]:
    """The text prompts of a dataset: metadata ``class_prompts``, else ``stuff_classes`` or
    ``thing_classes``; ``None`` when the metadata has none. All datasets must agree."""
    found = None
    for name in dataset_name_list(dataset_names):
        meta = MetadataCatalog.get(name)
        for key in ("class_prompts", "stuff_classes", "thing_classes"):
            if meta.get(key) is not None:
                names = list(meta.get(key))
                break
        else:
            continue
        if found is not None and names != found:
            raise ValueError(
                f"datasets {dataset_name_list(dataset_names)} have different classes: {found} vs "
                f"{names}"
            )
        found = names
    return found


def set_class_names(model_cfg: DictConfig, class_names: Sequence[str]) -> int:
    """Sets every ``class_names`` field of a model config to ``class_names`` and every
    ``num_classes`` field to K. Returns how many fields changed."""
    changed = 0

    def visit(node):
        nonlocal changed
        if isinstance(node, DictConfig):
            for key in list(node.keys()):
                if key == "class_names" and list(node[key]) != list(class_names):
                    node[key] = list(class_names)
                    changed += 1
                elif key == "num_classes" and node[key] != len(class_names):
                    node[key] = len(class_names)
                    changed += 1
                else:
                    visit(node.get(key))
        elif isinstance(node, ListConfig):
            for item in node:
                visit(item)

    visit(model_cfg)
    return changed
