"""Official DenseCLIP release checkpoints (mmcv format) → detectron2 checkpoints for our configs:
reading the release files, renaming their keys by the rules of :mod:`.official_rules` (which
documents the mapping), and checking the result against a model.
"""

import dataclasses
from collections import Counter
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..prompting import ClassTextPrompts
from .official_rules import RULE_TABLES, OfficialCheckpointError, RuleTable
from .safe_load import UntrustedCheckpointError, load_torch_file

__all__ = [
    "OfficialConversion",
    "load_official_checkpoint",
    "find_rule_table",
    "convert_official_state_dict",
    "check_matches_model",
    "check_class_names",
]


@dataclasses.dataclass
class OfficialConversion:
    """A converted checkpoint: our state dict and which official key became which."""

    state_dict: Dict[str, torch.Tensor]
    names: Dict[str, str]  # official key → our key
    table: RuleTable
    transformed: Dict[str, str] = dataclasses.field(default_factory=dict)  # key → what changed

    def summary(self) -> str:
        """e.g. ``"Semantic FPN (mmseg): 412 tensors (backbone 320, neck 16, ...)"``, plus the
        tensors whose values were transformed."""
        modules = Counter(key.split(".")[0] for key in self.names)
        counts = ", ".join(f"{module} {count}" for module, count in modules.items())
        changed = "".join(
            f"; {count} transformed: {what}"
            for what, count in Counter(self.transformed.values()).items()
        )
        return f"{self.table.name}: {len(self.names)} tensors ({counts}){changed}"


def load_official_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Reads an official release file: an mmcv checkpoint ``{'meta': ..., 'state_dict': ...}``
    (and possibly ``'optimizer'``), as mmcv 1.3.17's ``save_checkpoint`` writes it.

    The file is read by :func:`~.safe_load.load_torch_file`: tensors, Python containers and
    scalars, and numpy scalars and arrays (e.g. an evaluation hook's best score in
    ``meta['hook_msgs']``); nothing else is unpickled.

    Returns:
        (state dict, meta); meta is ``{}`` when the file has none.
    Raises:
        OfficialCheckpointError: the file needs another type (named, with the opt-in for
            trusted files), or is not an mmcv checkpoint.
    """
    try:
        checkpoint = load_torch_file(path)
    except UntrustedCheckpointError as error:
        raise OfficialCheckpointError(str(error)) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        found = sorted(checkpoint)[:10] if isinstance(checkpoint, dict) else type(checkpoint)
        raise OfficialCheckpointError(
            f"{path}: expected an mmcv checkpoint, a dict with a 'state_dict' dict (and 'meta'), "
            f"as the official DenseCLIP releases are; found {found}"
        )
    return checkpoint["state_dict"], checkpoint.get("meta") or {}


def find_rule_table(
    state_dict: Mapping[str, torch.Tensor], source: str = "the checkpoint"
) -> RuleTable:
    """The table whose marker prefix the checkpoint's keys have (exactly one must match)."""
    tables = [t for t in RULE_TABLES if any(key.startswith(t.marker) for key in state_dict)]
    if len(tables) != 1:
        known = ", ".join(f"{t.name} ('{t.marker}*')" for t in RULE_TABLES)
        found = sorted({key.split(".")[0] for key in state_dict})
        raise OfficialCheckpointError(
            f"{source}: cannot tell which official architecture it is: its top-level modules "
            f"are {found}; known architectures: {known}"
        )
    return tables[0]


def convert_official_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    table: Optional[RuleTable] = None,
    source: str = "the checkpoint",
) -> OfficialConversion:
    """Renames an official state dict to our names (and transforms the few tensors whose rule
    says so).

    Args:
        state_dict: the official ``state_dict`` (official key names).
        table: the architecture's rules; found from the keys when omitted.
        source: the checkpoint's name in error messages (its path).
    Raises:
        OfficialCheckpointError: listing every key that no rule maps.
    """
    table = table or find_rule_table(state_dict, source)
    converted, names, transformed, unmapped = {}, {}, {}, []
    for key, value in state_dict.items():
        found = table.lookup(key)
        if found is None:
            unmapped.append(key)
            continue
        new_key, rule = found
        if rule.transform is not None:
            try:
                value = rule.transform(value)
            except OfficialCheckpointError as error:
                raise OfficialCheckpointError(f"{source}: {key} {error}") from None
            transformed[key] = str(rule.transform)
        converted[new_key] = value
        names[key] = new_key
    if unmapped:
        raise OfficialCheckpointError(
            f"{source}: keys that no {table.name} rule maps (see denseclip.checkpoint.official_rules) "
            f"({len(unmapped)}):\n  " + "\n  ".join(unmapped)
        )
    return OfficialConversion(converted, names, table, transformed)


def check_matches_model(
    state_dict: Mapping[str, torch.Tensor],
    model_state: Mapping[str, torch.Tensor],
    source: str = "the converted checkpoint",
    model_name: str = "the model",
) -> None:
    """Strict loading check: the same keys as the model, with the same shapes.

    Args:
        state_dict: the converted checkpoint; model_state: the model's ``state_dict()``.
        source, model_name: their names in error messages (paths).

    Raises:
        OfficialCheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    missing = sorted(set(model_state) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_state))
    mismatched = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)}, model {tuple(model_state[key].shape)}"
        for key in sorted(set(state_dict) & set(model_state))
        if state_dict[key].shape != model_state[key].shape
    ]
    problems = [
        (f"{what} ({len(entries)})", entries)
        for what, entries in (
            ("model keys missing from the checkpoint", missing),
            ("checkpoint keys the model does not have", unexpected),
            ("shape mismatches", mismatched),
        )
        if entries
    ]
    if problems:
        raise OfficialCheckpointError(
            f"{source} does not fit {model_name} (is it the config the checkpoint was trained "
            "with?):\n"
            + "\n".join(f"{title}:\n  " + "\n  ".join(entries) for title, entries in problems)
        )


def check_class_names(
    official_classes: Optional[Sequence[str]], model: nn.Module, model_name: str = "the model"
) -> None:
    """The learned contexts are tied to the class names they were trained with: the model's
    prompts must be the checkpoint's ``meta['CLASSES']``, in order. Models without prompts
    (the CLIP baselines) and checkpoints without class names pass.

    Raises:
        OfficialCheckpointError: naming the first differing class.
    """
    if official_classes is None:
        return
    official_classes = list(official_classes)
    for module in model.modules():
        if not isinstance(module, ClassTextPrompts) or module.class_names == official_classes:
            continue
        ours = module.class_names
        index = next(
            (i for i, (a, b) in enumerate(zip(official_classes, ours)) if a != b),
            min(len(ours), len(official_classes)),
        )

        def name_at(names):
            return repr(names[index]) if index < len(names) else "no class"

        raise OfficialCheckpointError(
            f"the class names (text prompts) of {model_name} are not the checkpoint's "
            f"meta['CLASSES'] ({len(ours)} vs {len(official_classes)} classes): at index {index} "
            f"the model has {name_at(ours)}, the checkpoint {name_at(official_classes)}; use the "
            f"config the checkpoint was trained with"
        )
