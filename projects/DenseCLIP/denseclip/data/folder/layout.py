"""What both dataset folder layouts share: the split names and the format error."""

import os

__all__ = ["DatasetFormatError", "SPLITS", "require_dir"]

SPLITS = ("train", "val")


class DatasetFormatError(ValueError):
    """A dataset folder does not follow the expected layout or label format."""


def require_dir(path: str, what: str) -> None:
    """Raise :class:`DatasetFormatError` naming ``what`` unless ``path`` is a folder."""
    if not os.path.isdir(path):
        found = "a file" if os.path.exists(path) else "nothing"
        raise DatasetFormatError(f"{what}: expected a folder at {path}, found {found}")
