"""Loading a LazyConfig for a run (:func:`load_config`, what every entry point calls), and the
helpers that adapt it to the machine and to the dataset."""

import copy
import os
from typing import List, NamedTuple, Optional, Sequence, Union

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import LazyConfig

from ..data.catalog import dataset_class_names
from ..data.folder import parse_dataset_arg, register_folder_dataset
from .overrides import apply_overrides
from .run_keys import RUN_CONFIG_KEYS

__all__ = [
    "LoadedConfig",
    "default_device",
    "load_config",
    "set_class_names",
]


def default_device() -> str:
    """ "cuda" when a GPU is visible, else "cpu" (configs use it for ``train.device``)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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


class LoadedConfig(NamedTuple):
    """What :func:`load_config` returns.

    Attributes:
        cfg: the config, overrides applied, the model set to the dataset's classes.
        new_class_names: the dataset's class names when they replaced the model's (for a log
            line), else None.
    """

    cfg: DictConfig
    new_class_names: Optional[List[str]]


def load_config(
    config: Union[str, os.PathLike, DictConfig],
    overrides: Sequence[str] = (),
    datasets: Sequence[str] = (),
    split: str = "test",
) -> LoadedConfig:
    """A config for a run, as every entry point loads it (``train_net.py``, the predictors, the
    tools).

    1. registers the ``datasets``, ``NAME=ROOT`` folders (``--dataset``:
       :func:`~denseclip.data.register_folder_dataset`);
    2. applies the ``key=value`` ``overrides``, checked (:mod:`denseclip.config.overrides`,
       with :data:`~denseclip.config.run_keys.RUN_CONFIG_KEYS`): an unknown key or a value of
       the wrong type stops with the key named;
    3. sets every ``class_names`` / ``num_classes`` of the model to the class names of
       ``dataloader.<split>``'s datasets, when their metadata has some: the text prompts come
       from the data, no config edit needed.

    Args:
        config: a LazyConfig file, or a loaded config (copied, never modified).
        split: "train" for training, "test" for evaluation and inference.
    """
    for spec in datasets:
        register_folder_dataset(*parse_dataset_arg(spec))
    if isinstance(config, (str, os.PathLike)):
        cfg = LazyConfig.load(os.fspath(config))
    else:
        cfg = copy.deepcopy(config)
    apply_overrides(cfg, overrides, RUN_CONFIG_KEYS)
    dataset_names = OmegaConf.select(cfg, f"dataloader.{split}.dataset.names")
    class_names = dataset_class_names(dataset_names) if dataset_names else None
    if class_names is None or not set_class_names(cfg.model, class_names):
        return LoadedConfig(cfg, None)
    return LoadedConfig(cfg, class_names)
