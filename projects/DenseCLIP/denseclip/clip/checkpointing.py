"""Activation checkpointing for the CLIP encoders (their ``use_act_checkpoint`` option).

A checkpointed segment keeps only its inputs in the forward pass and runs again in the backward
pass to rebuild the activations its gradients need: less memory for one more forward.
"""

import contextlib
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["recomputes_activations", "run_segment"]


def recomputes_activations(module: nn.Module, use_act_checkpoint: bool) -> bool:
    """Whether ``module`` checkpoints its segments: the option is on, it is training and
    gradients are being recorded (otherwise there is nothing to save memory for)."""
    return use_act_checkpoint and module.training and torch.is_grad_enabled()


@contextlib.contextmanager
def _running_statistics_kept(module: nn.Module) -> Iterator[None]:
    """BatchNorms of ``module`` leave their running statistics as they are (momentum 0, the
    batch count restored), so that the recomputation does not count the batch a second time.
    They still receive their running statistics: the recomputation saves what the forward
    saved, as checkpointing requires."""
    norms = [
        m
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    kept = [(norm.momentum, norm.num_batches_tracked.clone()) for norm in norms]
    for norm in norms:
        norm.momentum = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, (momentum, count) in zip(norms, kept):
                norm.momentum = momentum
                norm.num_batches_tracked.copy_(count)


def run_segment(
    module: nn.Module, *inputs: Any, recompute: bool, function: Optional[Callable] = None
) -> Any:
    """``module(*inputs)``, or ``function(*inputs)`` for a method of ``module``.

    With ``recompute`` (see :func:`recomputes_activations`) it runs through
    ``torch.utils.checkpoint`` (non-reentrant): same outputs and gradients, activations recomputed
    in the backward pass. The random state is replayed (dropout and drop path draw the same
    masks) and BatchNorm running statistics are updated once, by the first forward.
    """
    if not recompute:
        return (function or module)(*inputs)
    return checkpoint(
        function or module,
        *inputs,
        use_reentrant=False,
        context_fn=lambda: (contextlib.nullcontext(), _running_statistics_kept(module)),
    )
