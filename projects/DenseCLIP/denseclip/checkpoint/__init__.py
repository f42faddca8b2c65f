"""Checkpoint loading and conversion (OpenAI CLIP files and official DenseCLIP releases → our
models)."""

from .atomic import AtomicWritePathManager, AtomicWriter
from .checkpointer import (
    CheckpointReadError,
    DenseCLIPCheckpointer,
    NonFiniteWeightsError,
    adapt_positional_embeddings,
    non_finite_tensors,
)
from .clip import (
    IMAGE_ENCODER_PREFIX,
    TEXT_ENCODER_PREFIX,
    ConversionReport,
    convert_openai_clip,
    load_openai_clip_state_dict,
)
from .imagenet import (
    IMAGENET_BACKBONE_PREFIX,
    combine_imagenet_and_clip,
    torchvision_resnet_to_detectron2,
)
from .official import (
    DENSECLIP_BACKBONE_RULES,
    RULE_TABLES,
    SEMANTIC_FPN_RULES,
    KeyRule,
    OfficialCheckpointError,
    OfficialConversion,
    RuleTable,
    check_class_names,
    check_matches_model,
    convert_official_state_dict,
    find_rule_table,
    load_official_checkpoint,
)

__all__ = [
    "AtomicWritePathManager",
    "AtomicWriter",
    "CheckpointReadError",
    "DenseCLIPCheckpointer",
    "NonFiniteWeightsError",
    "adapt_positional_embeddings",
    "non_finite_tensors",
    "IMAGE_ENCODER_PREFIX",
    "TEXT_ENCODER_PREFIX",
    "ConversionReport",
    "convert_openai_clip",
    "load_openai_clip_state_dict",
    "IMAGENET_BACKBONE_PREFIX",
    "combine_imagenet_and_clip",
    "torchvision_resnet_to_detectron2",
    "DENSECLIP_BACKBONE_RULES",
    "RULE_TABLES",
    "SEMANTIC_FPN_RULES",
    "KeyRule",
    "OfficialCheckpointError",
    "OfficialConversion",
    "RuleTable",
    "check_class_names",
    "check_matches_model",
    "convert_official_state_dict",
    "find_rule_table",
    "load_official_checkpoint",
]
