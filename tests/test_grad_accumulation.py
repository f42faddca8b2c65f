"""Specification of gradient accumulation (``train.grad_accumulation_steps``): N micro-batches
make one optimizer step equal to that of one N-times larger batch, and train_net.py runs,
logs the effective batch and resumes with it."""

import itertools
import os

import pytest
import torch

from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from denseclip.engine.train import _build_trainer, check_run

from helpers import (
    TINY_CONFIG,
    labelled_batch,
    model_without_batch_statistics,
    read_metrics,
    run_train_net,
    tiny_overrides,
)

pytestmark = pytest.mark.timeout(600)


def _one_step(cfg, state, batches, steps):
    """Loads ``state``, runs one trainer step over ``batches`` (cycled) with
    ``train.grad_accumulation_steps=steps``: (gradients, weights after the step)."""
    model = model_without_batch_statistics(cfg)
    model.load_state_dict(state)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    cfg.train.grad_accumulation_steps = steps
    trainer = _build_trainer(cfg, model, itertools.cycle(batches), optimizer)
    with EventStorage(0):
        trainer.run_step()
    named = dict(model.named_parameters())
    grads = {n: p.grad.clone() for n, p in named.items() if p.grad is not None}
    return grads, {n: p.detach().clone() for n, p in named.items()}


def test_micro_batches_step_like_one_larger_batch(tiny_config):
    cfg = tiny_config
    cfg.train.device = "cpu"
    cfg.optimizer.lr = 1e-2
    state = model_without_batch_statistics(cfg).state_dict()
    batch = labelled_batch(cfg.model.sem_seg_head.num_classes)

    grads_whole, weights_whole = _one_step(cfg, state, [batch], steps=1)
    halves = [batch[:2], batch[2:]]
    grads_acc, weights_acc = _one_step(cfg, state, halves, steps=2)
    quarters = [[image] for image in batch]
    grads_four, weights_four = _one_step(cfg, state, quarters, steps=4)

    def close(found, expected, name):
        scale = float(expected.abs().max())  # k_proj.bias: zero up to rounding (softmax)
        torch.testing.assert_close(found, expected, rtol=1e-9, atol=1e-9 * scale + 1e-15, msg=name)

    assert grads_whole.keys() == grads_acc.keys() == grads_four.keys()
    assert "backbone.bottom_up.prompts.contexts" in grads_whole  # the text side trains too
    for name, grad in grads_whole.items():
        close(grads_acc[name], grad, name)
        close(grads_four[name], grad, name)
    changed = 0
    for name, weight in weights_whole.items():
        close(weights_acc[name], weight, name)
        close(weights_four[name], weight, name)
        changed += not torch.equal(weight, state[name].double())
    assert changed > 0  # the optimizer stepped


def test_one_micro_batch_alone_steps_differently(tiny_config):
    """Negative control: the last micro-batch's gradient is not the step's gradient."""
    cfg = tiny_config
    cfg.train.device = "cpu"
    state = model_without_batch_statistics(cfg).state_dict()
    batch = labelled_batch(cfg.model.sem_seg_head.num_classes)
    grads_whole, _ = _one_step(cfg, state, [batch], steps=1)
    grads_last, _ = _one_step(cfg, state, [batch[2:]], steps=1)
    name = "backbone.bottom_up.prompts.contexts"
    assert not torch.allclose(grads_last[name], grads_whole[name], rtol=1e-3)


@pytest.mark.parametrize("steps", [0, -2, 1.5, True, "2"])
def test_invalid_accumulation_steps_are_refused_before_the_run(tiny_config, steps):
    tiny_config.train.grad_accumulation_steps = steps
    with pytest.raises(ValueError, match=r"train.grad_accumulation_steps: expected an integer"):
        check_run(tiny_config)


def test_train_net_accumulates_logs_the_effective_batch_and_resumes(tmp_path):
    out = str(tmp_path / "out")
    datasets = tmp_path / "datasets"
    args = ["--config-file", TINY_CONFIG]
    run = run_train_net(
        [*args, *tiny_overrides(out, max_iter=2), "train.grad_accumulation_steps=2"], datasets
    )
    assert run.returncode == 0, run.report()
    assert "2 images per data-loader batch (all GPUs) × 2 accumulation step(s) = 4 images" in (
        run.output
    )
    first = [r["iteration"] for r in read_metrics(os.path.join(out, "metrics.json"))]
    assert 0 in first and 1 in first

    resumed = run_train_net(
        [*args, "--resume", *tiny_overrides(out, max_iter=3), "train.grad_accumulation_steps=2"],
        datasets,
    )
    assert resumed.returncode == 0, resumed.report()
    records = read_metrics(os.path.join(out, "metrics.json"))
    steps = [r["iteration"] for r in records if "total_loss" in r]
    assert steps[-1] == 2 and steps.count(2) == 1  # resumed at the step after the checkpoint
    assert torch.load(os.path.join(out, "model_final.pth"), weights_only=False)["iteration"] == 2
