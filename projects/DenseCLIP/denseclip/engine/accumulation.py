"""Gradient accumulation (``train.grad_accumulation_steps = N``): one optimizer step over N
micro-batches, so that fewer GPUs run the official global batch (32 images for ADE20K, 16 for
COCO) with the official learning rate and schedule. An iteration stays one optimizer step:
``train.max_iter``, warm-up and checkpoints count steps, each of N data-loader batches.

detectron2's trainers call ``model(data)`` once per step and back-propagate what it returns.
:class:`MicroBatches` hands them N batches at a time and :class:`AccumulateGradients` runs the
first N - 1 forward and backward itself, so both trainers (plain and AMP) work unchanged.
"""

import contextlib
from typing import Callable, Dict, Iterable, Iterator, List

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["AccumulateGradients", "MicroBatches"]


class MicroBatches:
    """An endless data loader → lists of ``steps`` consecutive batches."""

    def __init__(self, data_loader: Iterable, steps: int):
        self.data_loader = data_loader
        self.steps = steps

    def __iter__(self) -> Iterator[List]:
        batches = iter(self.data_loader)
        while True:
            yield [next(batches) for _ in range(self.steps)]


class AccumulateGradients(nn.Module):
    """The training model, called on N micro-batches: the gradient of the mean of their losses.

    Every micro-batch's losses are divided by N. The first N - 1 are back-propagated here (under
    DDP's ``no_sync``: gradients are all-reduced once, with the last backward); the last one's
    are returned for the trainer to back-propagate. For losses that average over the batch, the
    summed gradient is that of one N-times larger batch (with batch statistics, e.g. BatchNorm
    in train mode or SyncBN, each micro-batch normalises with its own statistics). The returned
    values are the means over the micro-batches, which is what the trainer logs and checks.

    Args:
        model: the training model (DDP-wrapped or not), returning a dict of losses.
        steps: N ≥ 2.
        backward: how a loss is back-propagated; the AMP trainer scales it first.
    """

    def __init__(self, model: nn.Module, steps: int, backward: Callable = torch.Tensor.backward):
        super().__init__()
        self.model = model
        self.steps = steps
        self.backward = backward

    def _no_sync(self):
        if isinstance(self.model, DistributedDataParallel):
            return self.model.no_sync()
        return contextlib.nullcontext()

    def forward(self, micro_batches: List) -> Dict[str, torch.Tensor]:
        if len(micro_batches) != self.steps:
            raise ValueError(f"expected {self.steps} micro-batches, got {len(micro_batches)}")
        *first, last = micro_batches
        done: Dict[str, torch.Tensor] = {}
        for batch in first:
            with self._no_sync():
                losses = {name: value / self.steps for name, value in self.model(batch).items()}
                self.backward(sum(losses.values()))
            for name, value in losses.items():
                done[name] = done.get(name, 0) + value.detach()
        losses = self.model(last)
        return {name: value / self.steps + done.get(name, 0) for name, value in losses.items()}
