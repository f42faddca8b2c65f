"""Loading a LazyConfig for a run: checked overrides and the dataset's class names."""

from .arguments import add_config_arguments, parse_config_arguments
from .loading import (
    LoadedConfig,
    default_device,
    load_config,
    set_class_names,
)
from .overrides import ConfigKeys, ConfigOverrideError, apply_overrides, check_override
from .run_keys import RUN_CONFIG_KEYS

__all__ = [
    "ConfigKeys",
    "ConfigOverrideError",
    "LoadedConfig",
    "RUN_CONFIG_KEYS",
    "add_config_arguments",
    "apply_overrides",
    "check_override",
    "default_device",
    "load_config",
    "parse_config_arguments",
    "set_class_names",
]
