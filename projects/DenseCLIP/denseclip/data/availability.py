"""Checks, before anything is built, that the datasets a run reads are registered and that the
files their registration points to exist, with the command that prepares the missing ones."""

import difflib
import os
from typing import Dict, List, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from .catalog import dataset_name_list
from .ade20k import ADE20K_CHALLENGE_NAMES, ADE20K_DATASET_NAMES

__all__ = ["DatasetUnavailableError", "check_datasets_available", "missing_dataset_files"]

#: Metadata keys of registered datasets that name files or folders the data is read from.
PATH_KEYS = ("image_root", "sem_seg_root", "json_file")

_ADE20K_CHALLENGE_HINT = (
    "ADE20K is read from $DETECTRON2_DATASETS/ADEChallengeData2016 ({env}) as extracted: "
    "download http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip and unzip it "
    "into $DETECTRON2_DATASETS (images/ and annotations/ with training/ and validation/ each)."
)
_ADE20K_HINT = (
    "ADE20K is read from $DETECTRON2_DATASETS/ADEChallengeData2016 ({env}). Prepare it once: "
    "download http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip, unzip it "
    "into $DETECTRON2_DATASETS, then run detectron2's datasets/prepare_ade20k_sem_seg.py "
    "(https://github.com/facebookresearch/detectron2/blob/main/datasets/prepare_ade20k_sem_seg.py)"
    " with the same DETECTRON2_DATASETS: it writes annotations_detectron2/{{training,validation}}"
    " (labels shifted by -1, 0 -> 255)."
)
_COCO_HINT = (
    "COCO is read from $DETECTRON2_DATASETS/coco ({env}) in detectron2's layout: "
    "coco/{{train2017,val2017}}/ (images) and coco/annotations/instances_{{train,val}}2017.json "
    "(the 2017 train/val images and annotations of https://cocodataset.org/#download; see "
    "detectron2's datasets/README.md)."
)


class DatasetUnavailableError(FileNotFoundError):
    """A dataset a run reads is not registered, or its files are not where it was registered."""


def _environment() -> str:
    value = os.environ.get("DETECTRON2_DATASETS")
    return f"DETECTRON2_DATASETS={value}" if value else "DETECTRON2_DATASETS is unset: ./datasets"


def _hint(name: str) -> str:
    if name in ADE20K_CHALLENGE_NAMES:
        return _ADE20K_CHALLENGE_HINT.format(env=_environment())
    if name in ADE20K_DATASET_NAMES:
        return _ADE20K_HINT.format(env=_environment())
    if name.startswith("coco_"):
        return _COCO_HINT.format(env=_environment())
    return "The paths come from the dataset's registration (MetadataCatalog)."


def _shown(path: str) -> str:
    absolute = os.path.abspath(path)
    return path if path == absolute else f"{path} (= {absolute})"


def missing_dataset_files(name: str) -> Dict[str, str]:
    """{metadata key: path} of the registered dataset ``name``'s files and folders that do not
    exist (keys from :data:`PATH_KEYS`; datasets generated on first use have none)."""
    metadata = MetadataCatalog.get(name)
    paths = {key: metadata.get(key) for key in PATH_KEYS if metadata.get(key)}
    return {key: path for key, path in paths.items() if not os.path.exists(path)}


def check_datasets_available(used: Dict[str, Union[str, Sequence[str]]]) -> None:
    """Raises :class:`DatasetUnavailableError` for the first dataset of ``used`` ({config key:
    dataset name or names}) that is not registered or misses files, naming the config key, the
    dataset, the expected paths and how to prepare them."""
    registered: List[str] = DatasetCatalog.list()
    for key, names in used.items():
        for name in dataset_name_list(names):
            if name not in registered:
                close = difflib.get_close_matches(name, registered, n=3, cutoff=0.6)
                raise DatasetUnavailableError(
                    f"{key}: dataset {name!r} is not registered"
                    + (f". Did you mean: {', '.join(close)}?" if close else ".")
                    + " A dataset folder is registered with --dataset NAME=ROOT (as NAME_train "
                    "and NAME_val)."
                )
            missing = missing_dataset_files(name)
            if missing:
                paths = ", ".join(f"{k} {_shown(path)}" for k, path in missing.items())
                raise DatasetUnavailableError(
                    f"{key}: dataset {name!r} expects files that are not there: {paths} "
                    f"(found nothing). {_hint(name)}"
                )
