"""Optimizer parameter groups and the LR schedule of the official (mmcv) recipes."""

import functools
from typing import Dict, List, Mapping, Optional

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from detectron2.solver.build import get_default_optimizer_params, reduce_param_groups

__all__ = [
    "AdamWWithGradClip",
    "GlobalGradNormClipping",
    "clip_vit_lr_decay_rate",
    "layer_decay_param_groups",
    "param_groups_by_keys",
    "PolyLRWithWarmup",
]

#: Parameters of a CLIP ViT image encoder before its first block (the patch embedding).
_VIT_EMBEDDING = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.")
_VIT_ENCODER = "image_encoder."
_VIT_BLOCKS = "transformer.resblocks."


def param_groups_by_keys(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    custom_keys: Mapping[str, Mapping[str, float]] = (),
) -> List[Dict]:
    """Parameter groups with mmcv's ``paramwise_cfg.custom_keys`` semantics.

    Each trainable parameter takes the multipliers of the first key that is a substring of its
    name, keys tried longest first (alphabetically among equal lengths), like mmcv's
    ``DefaultOptimizerConstructor``. Frozen parameters (``requires_grad=False``) and parameters
    whose learning rate multiplier is 0 are left out.

    Args:
        model: the model.
        base_lr, weight_decay: the optimizer's defaults.
        custom_keys: ``{substring: {"lr_mult": float, "decay_mult": float}}``.
    Returns:
        Param groups with explicit ``lr`` and ``weight_decay`` (merged where equal).
    """
    keys = sorted(sorted(custom_keys), key=len, reverse=True)
    groups = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        rule = next((custom_keys[k] for k in keys if k in name), {})
        lr_mult = rule.get("lr_mult", 1.0)
        if lr_mult == 0:
            continue
        groups.append(
            {
                "params": [param],
                "lr": base_lr * lr_mult,
                "weight_decay": weight_decay * rule.get("decay_mult", 1.0),
            }
        )
    return reduce_param_groups(groups)


def clip_vit_lr_decay_rate(name: str, lr_decay_rate: float = 1.0, num_layers: int = 12) -> float:
    """Layer-wise learning-rate decay of ViTDet (detectron2's ``get_vit_lr_decay_rate``) for a
    CLIP ViT with OpenAI's parameter names.

    A parameter at depth i gets ``lr_decay_rate ** (num_layers + 1 - i)``: the patch embedding
    (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``) has depth 0, block j
    (``transformer.resblocks.j``) depth j + 1, and everything else (``ln_post``, ``proj``, the
    pyramid, the heads, the prompts and context decoder) depth num_layers + 1, i.e. rate 1. Only
    names under ``image_encoder.`` decay (the text encoder has blocks of the same names).
    detectron2's function cannot be used as is: it reads ViTDet's module names (``pos_embed``,
    ``patch_embed``, ``blocks``).

    Args:
        name: full parameter name (``backbone.bottom_up.image_encoder.transformer...``).
        lr_decay_rate: decay per block (ViTDet ViT-B: 0.7).
        num_layers: blocks of the ViT.
    """
    depth = num_layers + 1
    if _VIT_ENCODER in name:
        local = name[name.index(_VIT_ENCODER) + len(_VIT_ENCODER) :]
        if local.startswith(_VIT_EMBEDDING):
            depth = 0
        elif local.startswith(_VIT_BLOCKS):
            depth = int(local[len(_VIT_BLOCKS) :].split(".")[0]) + 1
    return lr_decay_rate ** (num_layers + 1 - depth)


def layer_decay_param_groups(
    model: nn.Module,
    base_lr: float,
    weight_decay: float,
    lr_decay_rate: float,
    num_layers: int,
    weight_decay_norm: float = 0.0,
    overrides: Optional[Mapping[str, Mapping[str, float]]] = None,
) -> List[Dict]:
    """ViTDet's parameter groups for a CLIP ViT detector: detectron2's
    ``get_default_optimizer_params`` with :func:`clip_vit_lr_decay_rate` as ``lr_factor_func``.

    Frozen parameters (the text encoder) are left out. Plain arguments, so that a config or the
    command line can set them (``optimizer.params.lr_decay_rate=0.65``).

    Args:
        model: the detector.
        base_lr, weight_decay: the optimizer's defaults.
        lr_decay_rate, num_layers: see :func:`clip_vit_lr_decay_rate`.
        weight_decay_norm: weight decay of normalization layers' parameters (ViTDet: 0).
        overrides: ``{parameter name within its module: {"lr": …, "weight_decay": …}}``, e.g.
            no weight decay for ``positional_embedding``.
    """
    return get_default_optimizer_params(
        model,
        base_lr=base_lr,
        weight_decay=weight_decay,
        weight_decay_norm=weight_decay_norm,
        lr_factor_func=functools.partial(
            clip_vit_lr_decay_rate, lr_decay_rate=lr_decay_rate, num_layers=num_layers
        ),
        overrides=dict(overrides or {}),
    )


class PolyLRWithWarmup(LRScheduler):
    """mmcv's ``poly`` policy with linear warm-up, stepped once per iteration.

    ``lr = (base_lr - min_lr) * (1 - it / max_iter) ** power + min_lr`` for every group (min_lr is
    absolute, as in mmcv), multiplied during the first ``warmup_iters`` iterations by
    ``1 - (1 - it / warmup_iters) * (1 - warmup_ratio)``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        max_iter: int,
        power: float = 0.9,
        min_lr: float = 1e-6,
        warmup_iters: int = 0,
        warmup_ratio: float = 1e-6,
        last_epoch: int = -1,
    ):
        self.max_iter = max_iter
        self.power = power
        self.min_lr = min_lr
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        super().__init__(optimizer, last_epoch)

    def state_dict(self) -> Dict:
        # Only the progress: the schedule itself comes from the config, so that a resumed run
        # with another max_iter follows the new schedule (as detectron2's LRMultiplier does).
        return {k: self.__dict__[k] for k in ("base_lrs", "last_epoch", "_last_lr")}

    def get_lr(self) -> List[float]:
        it = min(self.last_epoch, self.max_iter)
        coeff = (1 - it / self.max_iter) ** self.power
        lrs = [(base - self.min_lr) * coeff + self.min_lr for base in self.base_lrs]
        if it < self.warmup_iters:
            k = (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
            lrs = [lr * (1 - k) for lr in lrs]
        return lrs


class GlobalGradNormClipping:
    """Optimizer mixin: ``step()`` first rescales the gradients of all its parameters so that
    their global norm is at most ``max_norm`` (mmcv ``optimizer_config.grad_clip``).

    Mixed in before a torch optimizer (see :class:`AdamWWithGradClip`). One norm over all
    parameters, as ``torch.nn.utils.clip_grad_norm_``; detectron2's ``SOLVER.CLIP_GRADIENTS``
    "norm" clips every parameter separately. With detectron2's AMPTrainer the gradients are
    already unscaled when ``step()`` runs (``GradScaler.step`` unscales first).

    Args:
        params: parameters or parameter groups.
        max_norm: largest allowed global gradient norm.
        norm_type: the p of the p-norm (2 = L2).
        **kwargs: the optimizer's other arguments.
    """

    def __init__(self, params, *, max_norm: float, norm_type: float = 2.0, **kwargs):
        super().__init__(params, **kwargs)
        self.max_norm = max_norm
        self.norm_type = norm_type

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type)
        return super().step(closure)


class AdamWWithGradClip(GlobalGradNormClipping, torch.optim.AdamW):
    """:class:`torch.optim.AdamW` with global gradient-norm clipping (the official COCO recipes:
    ``grad_clip=dict(max_norm=0.1, norm_type=2)``). Takes AdamW's arguments plus ``max_norm``
    and ``norm_type``."""
