"""Checkpoint loading and conversion (OpenAI CLIP files and official DenseCLIP releases → our
models); every file is read without running code it carries (:mod:`.safe_load`)."""

from .atomic import AtomicWritePathManager, AtomicWriter
from .checkpointer import (
    CheckpointReadError,
    DenseCLIPCheckpointer,
    NonFiniteWeightsError,
    SafeDetectionCheckpointer,
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
    OfficialConversion,
    check_class_names,
    check_matches_model,
    convert_official_state_dict,
    find_rule_table,
    load_official_checkpoint,
)
from .official_rules import (
    DENSECLIP_BACKBONE_RULES,
    RULE_TABLES,
    SEMANTIC_FPN_RULES,
    KeyRule,
    OfficialCheckpointError,
    RuleTable,
)
from .safe_load import (
    TRUST_VARIABLE,
    UntrustedCheckpointError,
    checkpoints_trusted,
    load_pickle_file,
    load_torch_file,
)

__all__ = [
    "AtomicWritePathManager",
    "AtomicWriter",
    "CheckpointReadError",
    "DenseCLIPCheckpointer",
    "NonFiniteWeightsError",
    "SafeDetectionCheckpointer",
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
    "OfficialConversion",
    "check_class_names",
    "check_matches_model",
    "convert_official_state_dict",
    "find_rule_table",
    "load_official_checkpoint",
    "DENSECLIP_BACKBONE_RULES",
    "RULE_TABLES",
    "SEMANTIC_FPN_RULES",
    "KeyRule",
    "OfficialCheckpointError",
    "RuleTable",
    "TRUST_VARIABLE",
    "UntrustedCheckpointError",
    "checkpoints_trusted",
    "load_pickle_file",
    "load_torch_file",
]
