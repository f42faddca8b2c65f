"""Inference-time folding of BatchNorm into the preceding convolution.

In eval mode a BatchNorm is the per-channel affine map ``y = (x - μ)·γ/σ + β``; following a
convolution, it folds into the convolution's weights and bias, which saves one pass over every
activation. The outputs stay equal up to float rounding. The folded model is for inference
only: its state dict no longer has the BatchNorm entries.

Folded pairs, where the BatchNorm provably takes the convolution's output:

- detectron2 :class:`~detectron2.layers.Conv2d` with a BatchNorm ``norm`` (FPN, Semantic FPN
  head);
- consecutive ``Conv2d`` → BatchNorm inside an ``nn.Sequential`` (CLIP's downsample branches);
- the ``convN`` → ``bnN`` attributes of the CLIP ResNet stem and :class:`Bottleneck`.
"""

from typing import Iterator, Optional, Tuple

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from detectron2.layers import Conv2d as D2Conv2d
from detectron2.layers import FrozenBatchNorm2d

from ..clip.resnet import Bottleneck, CLIPResNet

__all__ = ["fold_batch_norms"]

_NAMED_PAIRS = {
    CLIPResNet: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
    Bottleneck: (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")),
}


def _is_foldable_norm(module: Optional[nn.Module], name: str) -> bool:
    """True for an eval-mode BatchNorm with running statistics; raises for a training one."""
    if isinstance(module, FrozenBatchNorm2d):
        return True
    if not isinstance(module, nn.modules.batchnorm._BatchNorm) or module.running_mean is None:
        return False
    if module.training:
        raise ValueError(
            f"{name}: BatchNorm folding needs eval mode (running statistics), but the module is "
            "in training mode; call model.eval() first"
        )
    return True


def _fold_into(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Makes ``conv`` compute ``norm(conv(x))`` (adds a bias if it had none)."""
    conv.weight, conv.bias = fuse_conv_bn_weights(
        conv.weight,
        conv.bias,
        norm.running_mean,
        norm.running_var,
        norm.eps,
        norm.weight,
        norm.bias,
    )


def _is_plain_conv(module: nn.Module) -> bool:
    """A 2D convolution whose output is its forward's output (no built-in norm/activation)."""
    if isinstance(module, D2Conv2d):
        return module.norm is None and module.activation is None
    return isinstance(module, nn.Conv2d)


def _conv_norm_pairs(model: nn.Module) -> Iterator[Tuple[nn.Conv2d, nn.Module, str]]:
    """(convolution, parent of the norm, norm attribute) of every foldable pair."""
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, D2Conv2d) and _is_foldable_norm(module.norm, prefix + "norm"):
            yield module, module, "norm"
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, conv), (norm_name, norm) in zip(children, children[1:]):
                if _is_plain_conv(conv) and _is_foldable_norm(norm, prefix + norm_name):
                    yield conv, module, norm_name
        for conv_name, norm_name in _NAMED_PAIRS.get(type(module), ()):
            if _is_foldable_norm(getattr(module, norm_name), prefix + norm_name):
                yield getattr(module, conv_name), module, norm_name


def fold_batch_norms(model: nn.Module) -> int:
    """Folds every eval-mode BatchNorm that directly follows a convolution into it, in place.

    Args:
        model: in eval mode (raises ``ValueError`` naming a BatchNorm still in training mode).
    Returns:
        The number of BatchNorms folded (each replaced by ``nn.Identity``, or removed from a
        detectron2 ``Conv2d``). Calling it again folds nothing more.
    """
    pairs = list(_conv_norm_pairs(model))
    for conv, parent, norm_name in pairs:
        _fold_into(conv, getattr(parent, norm_name))
        setattr(parent, norm_name, None if parent is conv else nn.Identity())
    return len(pairs)
