"""What the dataset catalog says about the datasets a config names."""

from typing import List, Optional

from detectron2.data import MetadataCatalog

__all__ = ["dataset_class_names", "dataset_name_list"]


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
