"""What the dataset catalog says about the datasets a config names."""

from typing import Callable, List, Optional

import numpy as np

from detectron2.data import MetadataCatalog
from detectron2.evaluation.sem_seg_evaluation import load_image_into_numpy_array

from .image_io import reduce_zero_label

__all__ = ["dataset_class_names", "dataset_name_list", "sem_seg_label_loader"]


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


def sem_seg_label_loader(dataset_name: str) -> Callable[..., np.ndarray]:
    """``SemSegEvaluator``'s ``sem_seg_loading_fn`` for ``dataset_name``: its label files read
    as detectron2 reads them, with mmseg's ``reduce_zero_label`` where the dataset's metadata
    asks for it (as the training mapper reads them)."""
    reduce = bool(MetadataCatalog.get(dataset_name).get("reduce_zero_label", False))

    def load(path: str, dtype=int) -> np.ndarray:
        labels = load_image_into_numpy_array(path, dtype=dtype)
        return reduce_zero_label(labels) if reduce else labels

    return load
