"""Detectron2 checkpointers that read files without running code they carry
(:mod:`.safe_load`); DenseCLIP's also adapts CLIP positional embeddings to the model, writes
checkpoints atomically and never writes non-finite weights."""

import errno
import logging
import math
import pickle
from typing import Dict, List

import torch
from torch.nn import functional as F

from detectron2.checkpoint import DetectionCheckpointer

from .atomic import AtomicWritePathManager
from .deploy import fit_prompts_to_checkpoint
from .safe_load import UntrustedCheckpointError, load_pickle_file, load_torch_file

__all__ = [
    "CheckpointReadError",
    "DenseCLIPCheckpointer",
    "NonFiniteWeightsError",
    "SafeDetectionCheckpointer",
    "adapt_positional_embeddings",
    "non_finite_tensors",
]

logger = logging.getLogger(__name__)


def _resize_grid_embedding(embedding: torch.Tensor, rows: int) -> torch.Tensor:
    """(1 + S²)×C → (1 + T²)×C, the S×S grid resized bilinearly to T×T, first row kept."""
    src, dst = math.isqrt(embedding.shape[0] - 1), math.isqrt(rows - 1)
    if src * src + 1 != embedding.shape[0] or dst * dst + 1 != rows:
        raise ValueError(
            f"positional embedding of {embedding.shape[0]} rows cannot be resized to {rows}: "
            "both must be 1 + a square"
        )
    channels = embedding.shape[1]
    grid = embedding[1:].reshape(1, src, src, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(dst, dst), mode="bilinear", align_corners=False)
    return torch.cat([embedding[:1], grid.permute(0, 2, 3, 1).reshape(dst * dst, channels)])


def adapt_positional_embeddings(
    checkpoint: Dict[str, torch.Tensor], model_state: Dict[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """Makes CLIP positional embeddings fit the model, as the official code does on loading.

    Image encoders (keys containing ``image_encoder.``): the grid is resized bilinearly to the
    stored size (e.g. 7×7 → 16×16 for RN50 at 512²). Text encoders (``text_encoder.``): the rows
    are truncated to the context length (77 → 13). Other keys are returned unchanged.
    """
    adapted = dict(checkpoint)
    for key, value in checkpoint.items():
        if not key.endswith("positional_embedding") or key not in model_state:
            continue
        target = model_state[key].shape
        if value.shape == target:
            continue
        if "image_encoder." in key and value.shape[1:] == target[1:]:
            adapted[key] = _resize_grid_embedding(value, target[0])
        elif (
            "text_encoder." in key and value.shape[1:] == target[1:] and value.shape[0] > target[0]
        ):
            adapted[key] = value[: target[0]]
        else:
            continue
        logger.info(f"Adapted {key} from {tuple(value.shape)} to {tuple(target)}")
    return adapted


class NonFiniteWeightsError(FloatingPointError):
    """The model holds NaN or infinite weights: they are not saved."""


class CheckpointReadError(OSError):
    """A checkpoint file that cannot be loaded (truncated, not a checkpoint)."""


def non_finite_tensors(state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Names of the floating-point tensors of ``state_dict`` with a NaN or infinite value."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` that reads every file format it accepts through
    :mod:`.safe_load`: ``.pkl`` (detectron2 or Caffe2 model zoo) by the restricted unpickler,
    the others (``.pth``, pycls ``.pyth``) ``weights_only``. A file that would build another
    object raises :class:`~.safe_load.UntrustedCheckpointError`."""

    def _load_file(self, filename: str):
        if filename.endswith(".pkl"):
            return _model_zoo_checkpoint(load_pickle_file(filename), self.logger)
        if filename.endswith(".pyth"):
            return _pycls_checkpoint(load_torch_file(filename), filename)
        return super()._load_file(filename)

    def _torch_load(self, f: str):
        return load_torch_file(f)


def _model_zoo_checkpoint(data: dict, logger: logging.Logger) -> dict:
    """A ``.pkl`` file's content as detectron2's checkpointer reads it: a detectron2 model zoo
    file (``{"model": ..., "__author__": ...}``) as it is; a Caffe2 / Detectron1 one (its
    ``"blobs"``, or the dict itself for ImageNet models), ``*_momentum`` entries dropped, for
    loading by name-matching heuristics."""
    if "model" in data and "__author__" in data:
        logger.info(f"Reading a file from '{data['__author__']}'")
        return data
    blobs = data.get("blobs", data)
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}


def _pycls_checkpoint(data: dict, filename: str) -> dict:
    """A pycls ``.pyth`` file's content as detectron2's checkpointer reads it."""
    if "model_state" not in data:
        raise ValueError(
            f"Cannot load .pyth file {filename}; pycls checkpoints must contain 'model_state'."
        )
    model_state = {
        k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")
    }
    return {"model": model_state, "__author__": "pycls", "matching_heuristics": True}


class DenseCLIPCheckpointer(SafeDetectionCheckpointer):
    """:class:`DetectionCheckpointer` that reads files safely, adapts positional embeddings before
    loading (and swaps in deployed class prompts for a deploy checkpoint,
    :mod:`denseclip.checkpoint.deploy`), and for saving:

    - writes each checkpoint and the ``last_checkpoint`` tag atomically
      (:mod:`denseclip.checkpoint.atomic`): a run killed at any moment, or a full disk, leaves the
      previous checkpoint and the tag naming it intact, so ``--resume`` starts from the last
      complete checkpoint;
    - refuses to save a model with NaN or infinite weights (:class:`NonFiniteWeightsError`,
      naming them), so a diverged run never overwrites good checkpoints with bad ones.

    A checkpoint that cannot be loaded raises :class:`CheckpointReadError` naming the file, one
    that would run code :class:`~.safe_load.UntrustedCheckpointError`.
    """

    def __init__(self, model, save_dir: str = "", **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = AtomicWritePathManager(self.path_manager)

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        bad = non_finite_tensors(self.model.state_dict())
        if bad:
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise NonFiniteWeightsError(
                f"not saving checkpoint {name}: the model has NaN or infinite values in "
                f"{len(bad)} tensors ({shown}); training diverged. The checkpoints already in "
                f"{self.save_dir} are intact: lower the learning rate and --resume from the last "
                "one."
            )
        try:
            super().save(name, **kwargs)
        except OSError as error:
            last = (
                f"the last complete checkpoint is still {self.get_checkpoint_file()}"
                if self.has_checkpoint()
                else "there is no earlier checkpoint"
            )
            advice = "; free disk space and --resume" if error.errno == errno.ENOSPC else ""
            raise type(error)(
                error.errno, f"checkpoint {name} was not saved ({error.strerror}); {last}{advice}"
            ) from error

    def _load_file(self, filename: str):
        try:
            return super()._load_file(filename)
        except UntrustedCheckpointError:
            raise
        except (RuntimeError, EOFError, pickle.UnpicklingError, OSError) as error:
            raise CheckpointReadError(
                f"cannot load checkpoint {filename} (truncated, or not a checkpoint?): {error}"
            ) from error

    def _load_model(self, checkpoint):
        fit_prompts_to_checkpoint(self.model, checkpoint["model"])
        checkpoint["model"] = adapt_positional_embeddings(
            checkpoint["model"], self.model.state_dict()
        )
        return super()._load_model(checkpoint)
