"""OpenAI CLIP release files → state dicts for our models.

Our encoders keep OpenAI's parameter names, so conversion is a prefix mapping: ``visual.*`` goes
to the image encoder, the text tower's keys to the text encoder. Positional embeddings are
adapted to the model's sizes at load time (:mod:`.checkpointer`), so one converted file serves
every input resolution and context length.
"""

import dataclasses
from typing import Dict, List, Tuple

import torch

from .safe_load import load_torch_file

__all__ = [
    "IMAGE_ENCODER_PREFIX",
    "TEXT_ENCODER_PREFIX",
    "ConversionReport",
    "convert_openai_clip",
    "load_openai_clip_state_dict",
]

IMAGE_ENCODER_PREFIX = "backbone.bottom_up.image_encoder."
TEXT_ENCODER_PREFIX = "backbone.bottom_up.prompts.text_encoder."
_TEXT_KEYS = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)
# Entries of OpenAI's files that no DenseCLIP module uses.
_UNUSED_KEYS = ("logit_scale", "input_resolution", "context_length", "vocab_size")


@dataclasses.dataclass
class ConversionReport:
    """Which source keys went where."""

    image: List[str] = dataclasses.field(default_factory=list)
    text: List[str] = dataclasses.field(default_factory=list)
    skipped: List[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.image)} image-encoder tensors, {len(self.text)} text-encoder tensors, "
            f"{len(self.skipped)} skipped ({', '.join(self.skipped) or 'none'})"
        )


def load_openai_clip_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Reads an OpenAI CLIP release file (TorchScript archive such as ``RN50.pt``, or a plain
    state dict) as a float32 state dict. Archives are read by ``torch.jit.load`` only, state
    dicts by :func:`~.safe_load.load_torch_file` (raises ``UntrustedCheckpointError``)."""
    try:
        state_dict = torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:
        state_dict = load_torch_file(path)
        if not isinstance(state_dict, dict):
            raise ValueError(f"{path}: expected a CLIP state dict, got {type(state_dict).__name__}")
        state_dict = state_dict.get("state_dict", state_dict)
    return {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}


def convert_openai_clip(
    state_dict: Dict[str, torch.Tensor],
) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """Maps OpenAI CLIP names to our model's names.

    Args:
        state_dict: an OpenAI CLIP state dict (``visual.*``, text tower keys, ``logit_scale``...).
    Returns:
        (converted state dict, report). Raises ``KeyError`` naming the first key that is neither
        a CLIP image/text key nor a known unused entry.
    """
    converted, report = {}, ConversionReport()
    for key, value in state_dict.items():
        if key.startswith("visual."):
            converted[IMAGE_ENCODER_PREFIX + key[len("visual.") :]] = value
            report.image.append(key)
        elif key.startswith(_TEXT_KEYS):
            converted[TEXT_ENCODER_PREFIX + key] = value
            report.text.append(key)
        elif key in _UNUSED_KEYS:
            report.skipped.append(key)
        else:
            raise KeyError(
                f"unexpected key {key!r} in a CLIP state dict: expected 'visual.*', one of "
                f"{_TEXT_KEYS} or {_UNUSED_KEYS}"
            )
    if not report.image and not report.text:
        raise KeyError("no CLIP image ('visual.*') or text keys found: is this a CLIP file?")
    return converted, report
