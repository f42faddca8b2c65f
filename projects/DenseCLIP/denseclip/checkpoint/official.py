"""Official DenseCLIP release checkpoints (mmcv format) → detectron2 checkpoints for our configs.

The official models are mmseg modules; ours are detectron2's. Our CLIP encoders, contexts, γ and
context decoder keep the official inner names, so those map by prefix; the neck and the decode
head are renamed and re-numbered. Semantic FPN (segmentation, DenseCLIP and CLIP baselines):

    official (mmseg 0.19)                          ours (detectron2)
    backbone.*                                     backbone.bottom_up.image_encoder.*
    text_encoder.*                                 backbone.bottom_up.prompts.text_encoder.*
    contexts                                       backbone.bottom_up.prompts.contexts
    gamma                                          backbone.bottom_up.gamma
    context_decoder.*                              backbone.bottom_up.context_decoder.*
    neck.lateral_convs.{i}.conv.{weight,bias}      backbone.fpn_lateral{i+2}.{weight,bias}
    neck.fpn_convs.{i}.conv.{weight,bias}          backbone.fpn_output{i+2}.{weight,bias}
    decode_head.scale_heads.{i}.{j}.conv.weight    sem_seg_head.p{i+2}.{j}.weight
    decode_head.scale_heads.{i}.{j}.bn.*           sem_seg_head.p{i+2}.{j}.norm.*
    decode_head.conv_seg.{weight,bias}             sem_seg_head.predictor.{weight,bias}

mmseg numbers the pyramid levels from 0 (stride 4), detectron2 names them by log2(stride): level
i is ``{i+2}``. Both heads interleave their 3×3 convs with ×2 upsampling modules in one
``Sequential`` per level, so the index j inside a level is the same in both.

Every tensor is kept as the checkpoint has it: in particular the text encoder, whose official
weights differ slightly from CLIP's (mmcv's poly schedule trains its ``lr_mult=0`` group at
``min_lr``), is never reloaded from CLIP. The official IdentityHead (auxiliary loss) has no
parameters. Other architectures (detection) are further ``RuleTable`` entries of
``RULE_TABLES``, reusing ``DENSECLIP_BACKBONE_RULES``.
"""

import dataclasses
import re
from collections import Counter
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..prompting import ClassTextPrompts

__all__ = [
    "OfficialCheckpointError",
    "KeyRule",
    "RuleTable",
    "DENSECLIP_BACKBONE_RULES",
    "SEMANTIC_FPN_RULES",
    "RULE_TABLES",
    "OfficialConversion",
    "load_official_checkpoint",
    "find_rule_table",
    "convert_official_state_dict",
    "check_matches_model",
    "check_class_names",
]


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be read, converted, or loaded into the given model."""


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """One renaming rule: an official key pattern → our key.

    Args:
        pattern: regular expression that must match the whole official key.
        template: our key, a ``str.format`` template over the pattern's named groups.
        level_offset: added to the group ``level`` (an mmseg pyramid index) before formatting.
    """

    pattern: str
    template: str
    level_offset: int = 0

    def apply(self, key: str) -> Optional[str]:
        """Our name for ``key``, or None when the rule does not match it."""
        match = re.fullmatch(self.pattern, key)
        if match is None:
            return None
        groups = match.groupdict()
        if "level" in groups:
            groups["level"] = int(groups["level"]) + self.level_offset
        return self.template.format(**groups)


@dataclasses.dataclass(frozen=True)
class RuleTable:
    """The renaming rules of one official architecture.

    Args:
        name: shown in messages.
        marker: a key prefix that only this architecture's checkpoints have; it picks the table.
        rules: tried in order, the first match wins; a key matching none is an error.
    """

    name: str
    marker: str
    rules: Tuple[KeyRule, ...]

    def rename(self, key: str) -> Optional[str]:
        """Our name for ``key`` by the first matching rule, or None."""
        for rule in self.rules:
            new_key = rule.apply(key)
            if new_key is not None:
                return new_key
        return None


#: The official image encoder, text side and context decoder → our FPN bottom-up
#: (:class:`~denseclip.backbone.DenseCLIPBackbone` / ``CLIPImageBackbone``); shared by the
#: segmentation and detection tables.
DENSECLIP_BACKBONE_RULES = (
    KeyRule(r"backbone\.(?P<rest>.+)", "backbone.bottom_up.image_encoder.{rest}"),
    KeyRule(r"text_encoder\.(?P<rest>.+)", "backbone.bottom_up.prompts.text_encoder.{rest}"),
    KeyRule(r"contexts", "backbone.bottom_up.prompts.contexts"),
    KeyRule(r"gamma", "backbone.bottom_up.gamma"),
    KeyRule(r"context_decoder\.(?P<rest>.+)", "backbone.bottom_up.context_decoder.{rest}"),
)

# detectron2's FPN and SemSegFPNHead name a level by log2(its stride); mmseg's level 0 has stride 4.
_FIRST_LEVEL = 2

SEMANTIC_FPN_RULES = RuleTable(
    name="Semantic FPN (mmseg)",
    marker="decode_head.",
    rules=(
        *DENSECLIP_BACKBONE_RULES,
        KeyRule(
            r"neck\.lateral_convs\.(?P<level>\d+)\.conv\.(?P<param>weight|bias)",
            "backbone.fpn_lateral{level}.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"neck\.fpn_convs\.(?P<level>\d+)\.conv\.(?P<param>weight|bias)",
            "backbone.fpn_output{level}.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"decode_head\.scale_heads\.(?P<level>\d+)\.(?P<layer>\d+)\.conv\.weight",
            "sem_seg_head.p{level}.{layer}.weight",
            _FIRST_LEVEL,
        ),
        KeyRule(
            r"decode_head\.scale_heads\.(?P<level>\d+)\.(?P<layer>\d+)\.bn\.(?P<param>.+)",
            "sem_seg_head.p{level}.{layer}.norm.{param}",
            _FIRST_LEVEL,
        ),
        KeyRule(r"decode_head\.conv_seg\.(?P<param>weight|bias)", "sem_seg_head.predictor.{param}"),
    ),
)

RULE_TABLES: Tuple[RuleTable, ...] = (SEMANTIC_FPN_RULES,)


@dataclasses.dataclass
class OfficialConversion:
    """A converted checkpoint: our state dict and which official key became which."""

    state_dict: Dict[str, torch.Tensor]
    names: Dict[str, str]  # official key → our key
    table: RuleTable

    def summary(self) -> str:
        """e.g. ``"Semantic FPN (mmseg): 412 tensors (backbone 320, neck 16, ...)"``."""
        modules = Counter(key.split(".")[0] for key in self.names)
        counts = ", ".join(f"{module} {count}" for module, count in modules.items())
        return f"{self.table.name}: {len(self.names)} tensors ({counts})"


def load_official_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], dict]:
    """Reads an official release file: an mmcv checkpoint ``{'meta': ..., 'state_dict': ...}``.

    Returns:
        (state dict, meta); meta is ``{}`` when the file has none.
    """
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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
    """Renames an official state dict to our names.

    Args:
        state_dict: the official ``state_dict`` (official key names).
        table: the architecture's rules; found from the keys when omitted.
        source: the checkpoint's name in error messages (its path).
    Raises:
        OfficialCheckpointError: listing every key that no rule maps.
    """
    table = table or find_rule_table(state_dict, source)
    converted, names, unmapped = {}, {}, []
    for key, value in state_dict.items():
        new_key = table.rename(key)
        if new_key is None:
            unmapped.append(key)
            continue
        converted[new_key] = value
        names[key] = new_key
    if unmapped:
        raise OfficialCheckpointError(
            f"{source}: keys that no {table.name} rule maps (see denseclip.checkpoint.official) "
            f"({len(unmapped)}):\n  " + "\n  ".join(unmapped)
        )
    return OfficialConversion(converted, names, table)


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
