"""Optimizer parameter groups and the LR schedule of the official (mmcv) recipes."""

from typing import Dict, List, Mapping

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from detectron2.solver.build import reduce_param_groups

__all__ = ["param_groups_by_keys", "PolyLRWithWarmup"]


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

    def get_lr(self) -> List[float]:
        it = min(self.last_epoch, self.max_iter)
        coeff = (1 - it / self.max_iter) ** self.power
        lrs = [(base - self.min_lr) * coeff + self.min_lr for base in self.base_lrs]
        if it < self.warmup_iters:
            k = (1 - it / self.warmup_iters) * (1 - self.warmup_ratio)
            lrs = [lr * (1 - k) for lr in lrs]
        return lrs
