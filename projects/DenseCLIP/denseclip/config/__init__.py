"""Loading a LazyConfig for a run: checked overrides and the dataset's class names."""

from .loading import dataset_class_names, dataset_name_list, default_device, set_class_names
from .overrides import ConfigOverrideError, apply_overrides, check_override, parse_overrides

__all__ = [
    "ConfigOverrideError",
    "apply_overrides",
    "check_override",
    "dataset_class_names",
    "dataset_name_list",
    "default_device",
    "parse_overrides",
    "set_class_names",
]
