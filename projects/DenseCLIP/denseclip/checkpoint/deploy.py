"""Deploy checkpoints: class prompts replaced by the text embeddings they give.

With post-model prompting the K class text embeddings depend only on learned parameters, so
inference never needs the text encoder. :func:`deploy_class_prompts` swaps every
:class:`~denseclip.prompting.ClassTextPrompts` of a model for a :class:`DeployedClassPrompts`
holding its 1×K×C output (``tools/export_deploy.py`` saves the result; the ONNX / TorchScript
export traces it). A model built from the config loads such a checkpoint because
:class:`~denseclip.checkpoint.DenseCLIPCheckpointer` calls :func:`fit_prompts_to_checkpoint`
first, which swaps in the deployed prompts where the checkpoint holds their embeddings.
"""

from typing import Dict, Iterator, List, Sequence, Tuple, Type

import torch
from torch import nn

from ..prompting import ClassTextPrompts

__all__ = ["DeployedClassPrompts", "deploy_class_prompts", "fit_prompts_to_checkpoint"]


class DeployedClassPrompts(nn.Module):
    """Class prompts for inference only: the fixed 1×K×C text embeddings of a
    :class:`~denseclip.prompting.ClassTextPrompts`, without its text encoder and contexts.

    The buffer is named ``deployed_embeddings``, so a deploy checkpoint holds
    ``...prompts.deployed_embeddings`` where the full one holds the text encoder and contexts.

    Args:
        class_names: the K class prompts.
        embeddings: 1×K×C text embeddings of the class prompts.
    """

    def __init__(self, class_names: Sequence[str], embeddings: torch.Tensor):
        super().__init__()
        self.class_names = list(class_names)
        self.register_buffer("deployed_embeddings", embeddings)

    @classmethod
    def from_prompts(cls, prompts: ClassTextPrompts) -> "DeployedClassPrompts":
        """The deployed form of ``prompts``: their class embeddings, computed once."""
        with torch.no_grad():
            return cls(prompts.class_names, prompts.encode(prompts.class_names))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def forward(self) -> torch.Tensor:
        """→ the 1×K×C text embeddings of the class prompts."""
        if self.training:
            raise RuntimeError(
                "these class prompts are deployed (fixed text embeddings, no text encoder): "
                "they are for inference only; to train, load a full checkpoint into a model "
                "built from the config"
            )
        return self.deployed_embeddings

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Refused: free text needs the text encoder, which deployed prompts do not have."""
        raise RuntimeError(
            "free-text prompts need the text encoder, which deployed class prompts (a "
            "checkpoint written by tools/export_deploy.py) do not have; load the full "
            "checkpoint instead"
        )


def _submodules(model: nn.Module, kind: Type[nn.Module]) -> Iterator[Tuple[str, nn.Module, str]]:
    """(qualified name, parent, attribute name) of each submodule of type ``kind``."""
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kind):
                yield (f"{parent_name}.{name}" if parent_name else name), parent, name


def _replace(parent: nn.Module, name: str, module: DeployedClassPrompts) -> DeployedClassPrompts:
    """Puts ``module`` in place of ``parent.name``, in the mode of the module it replaces."""
    setattr(parent, name, module.train(getattr(parent, name).training))
    return module


def deploy_class_prompts(model: nn.Module) -> List[DeployedClassPrompts]:
    """Replaces every ClassTextPrompts below ``model`` by its :class:`DeployedClassPrompts`,
    in place. Returns the new modules (none for a model without class prompts)."""
    return [
        _replace(parent, name, DeployedClassPrompts.from_prompts(getattr(parent, name)))
        for _, parent, name in _submodules(model, ClassTextPrompts)
    ]


def fit_prompts_to_checkpoint(model: nn.Module, state_dict: Dict[str, torch.Tensor]) -> None:
    """Makes ``model`` accept ``state_dict`` where the two disagree on deployment: each
    ClassTextPrompts whose ``deployed_embeddings`` the state dict holds is replaced by an
    (empty) :class:`DeployedClassPrompts` of the same shape, which the state dict then fills.

    Raises:
        ValueError: the deployed embeddings are not 1×K×C for the model's K classes and C
            (exported from another config or dataset), or a full checkpoint (with ``contexts``)
            meets deployed prompts.
    """
    for qualified_name, parent, name in _submodules(model, ClassTextPrompts):
        key = f"{qualified_name}.deployed_embeddings"
        prompts = getattr(parent, name)
        if key not in state_dict:
            continue
        expected = (1, prompts.num_classes, prompts.text_encoder.embed_dim)
        found = tuple(state_dict[key].shape)
        if found != expected:
            raise ValueError(
                f"checkpoint key {key!r}: expected deployed text embeddings of shape "
                f"{expected} (1 × K={prompts.num_classes} class names × C), found {found}; "
                "was it exported from another config or dataset?"
            )
        empty = prompts.contexts.new_empty(expected)
        _replace(parent, name, DeployedClassPrompts(prompts.class_names, empty))
    for qualified_name, _, _ in _submodules(model, DeployedClassPrompts):
        if f"{qualified_name}.contexts" in state_dict:
            raise ValueError(
                f"checkpoint holds {qualified_name}.contexts and a text encoder but these prompts "
                "are deployed (no text encoder): build the model from the config again to load "
                "a full checkpoint"
            )
