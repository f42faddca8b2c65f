"""Training and evaluation with LazyConfigs (the logic behind ``train_net.py``).

Follows detectron2's ``tools/lazyconfig_train_net.py`` and adds what DenseCLIP needs: CPU
DistributedDataParallel, dataset-driven class prompts, torch LR schedulers that need the
optimizer, evaluation results written as JSON, and a clear word when no CLIP weights are given.
What can be checked before anything is built is checked first (:func:`check_run`): override
keys, dataset files, the checkpoint to load, AMP without CUDA. A non-finite loss stops training
before its optimizer step (:class:`NonFiniteLossError`).
"""

import copy
import json
import logging
import os
from typing import Dict, Mapping, Optional

import torch

from detectron2.config import instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..checkpoint import DenseCLIPCheckpointer
from ..config import load_config
from ..data.availability import check_datasets_available
from ..meta_arch import SemanticSegmentorWithTTA
from . import host_memory
from .accumulation import AccumulateGradients, MicroBatches

__all__ = [
    "NonFiniteLossError",
    "build_model",
    "check_run",
    "do_test",
    "do_train",
    "main",
    "setup",
]

logger = logging.getLogger("detectron2")

_AMP_PRECISIONS = ("float16", "bfloat16")


def setup(args):
    """Loads the config (:func:`denseclip.config.load_config`: ``--dataset`` folders, checked
    overrides, ``--aug-test``, the classes of the dataset it trains on or, with ``--eval-only``,
    evaluates on), checks what can fail before anything is built (:func:`check_run`), and sets
    up logging and the output folder (detectron2's ``default_setup``)."""
    overrides = list(args.opts or [])
    if getattr(args, "aug_test", False):
        overrides.append("tta.enabled=True")
    split = "test" if args.eval_only else "train"
    cfg, class_names = load_config(args.config_file, overrides, args.dataset or (), split=split)
    check_run(cfg, eval_only=args.eval_only, resume=getattr(args, "resume", False))
    default_setup(cfg, args)  # saves config.yaml: after the classes are set
    if class_names is not None:
        logger.info(f"Model set to the dataset's {len(class_names)} classes: {class_names}")
    return cfg


def _check_devices(cfg, training: bool = True) -> None:
    """CUDA is asked for (``train.device``; ``train.amp`` when ``training``) only where there
    is some."""
    device = str(cfg.train.device)
    amp = cfg.train.get("amp") or {}
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"train.device={device!r}, but this machine has no CUDA GPU "
            "(torch.cuda.is_available() is False): run on the CPU with train.device=cpu"
        )
    if not training or not amp.get("enabled", False):
        return
    if not device.startswith("cuda"):
        raise RuntimeError(
            "train.amp.enabled=True needs a CUDA GPU (detectron2's AMPTrainer), but "
            + (
                f"train.device is {device!r}: set train.device=cuda"
                if torch.cuda.is_available()
                else "this machine has none (torch.cuda.is_available() is False): train "
                "without it, train.amp.enabled=False"
            )
        )
    precision = amp.get("precision", "float16")
    if precision not in _AMP_PRECISIONS:
        raise ValueError(
            f"train.amp.precision: expected one of {', '.join(_AMP_PRECISIONS)}, got {precision!r}"
        )


def _target_name(node) -> str:
    target = node.get("_target_")
    return getattr(target, "__name__", str(target))


def _check_checkpoint_file(path: str, key: str) -> None:
    if path and "://" not in path and not os.path.isfile(path):
        found = "a folder" if os.path.isdir(path) else "nothing"
        raise FileNotFoundError(f"{key}: expected a checkpoint file at {path!r}, found {found}")


def check_run(cfg, eval_only: bool = False, resume: bool = False) -> None:
    """Fails fast, before any model, optimizer or data loader is built, with what can be
    checked from the config alone: the datasets the run reads are registered and their files
    exist (train, and test when it evaluates; test only with ``eval_only``), the checkpoint to
    load exists (``train.init_checkpoint``, unless ``resume`` finds a checkpoint in
    ``train.output_dir``), CUDA exists where ``train.device`` or ``train.amp`` ask for it
    (AMP: training only), ``--aug-test`` is asked of a segmentation model, and
    ``train.grad_accumulation_steps`` is a positive integer."""
    if (cfg.get("tta") or {}).get("enabled", False) and "sem_seg_head" not in cfg.model:
        raise ValueError(
            "--aug-test (tta.enabled=True) is the multi-scale + flip test of semantic "
            f"segmentation models; {_target_name(cfg.model)} has no sem_seg_head"
        )
    checkpoint = cfg.train.init_checkpoint
    if eval_only:
        if not checkpoint:
            raise ValueError(
                "--eval-only needs the weights to evaluate: train.init_checkpoint=FILE"
            )
        _check_checkpoint_file(checkpoint, "train.init_checkpoint")
        _check_devices(cfg, training=False)
        check_datasets_available(
            {"dataloader.test.dataset.names": cfg.dataloader.test.dataset.names}
        )
        return
    _check_devices(cfg)
    _accumulation_steps(cfg)
    last_checkpoint = os.path.join(cfg.train.output_dir, "last_checkpoint")
    if not (resume and os.path.isfile(last_checkpoint)):
        _check_checkpoint_file(checkpoint, "train.init_checkpoint")
    used = {"dataloader.train.dataset.names": cfg.dataloader.train.dataset.names}
    if "evaluator" in cfg.dataloader:
        used["dataloader.test.dataset.names"] = cfg.dataloader.test.dataset.names
    check_datasets_available(used)


def build_model(cfg) -> torch.nn.Module:
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    return model


def _ddp(model, cfg, **kwargs):
    if cfg.train.device == "cpu":
        kwargs["device_ids"] = None  # CPU DDP rejects device ids
    return create_ddp_model(model, **kwargs)


def _with_tta(cfg, model):
    """(model, test loader config) for evaluation. With ``tta.enabled`` (``--aug-test``) the model
    is wrapped in :class:`SemanticSegmentorWithTTA` (the other ``tta`` keys are its arguments;
    ``base_size`` defaults to the test resize's ``scale``, e.g. (2048, 640) for ViT-B, as mmseg's
    ``MultiScaleFlipAug`` takes the test ``img_scale``) and the test mapper does not resize: the
    wrapper resizes the original image to each scale."""
    options = dict(cfg.get("tta") or {})
    if not options.pop("enabled", False):
        return model, cfg.dataloader.test
    loader = copy.deepcopy(cfg.dataloader.test)
    augmentations = loader.mapper.get("augmentations")
    if isinstance(augmentations, Mapping) and augmentations.get("scale") is not None:
        options.setdefault("base_size", tuple(augmentations.scale))
    loader.mapper.augmentations = []
    tta = SemanticSegmentorWithTTA(model, **options)
    logger.info(
        f"Multi-scale test: scales {tta.scales} of {tta.base_size}, flip {tta.flip}; "
        "softmax averaged"
    )
    return tta, loader


def do_test(cfg, model) -> Optional[Dict]:
    """Evaluates on ``cfg.dataloader.test``; prints the table and writes ``eval_results.json``."""
    if "evaluator" not in cfg.dataloader:
        return None
    model, loader = _with_tta(cfg, model)
    results = inference_on_dataset(
        model, instantiate(loader), instantiate(cfg.dataloader.evaluator)
    )
    if comm.is_main_process():
        print_csv_format(results)
        os.makedirs(cfg.train.output_dir, exist_ok=True)
        with open(os.path.join(cfg.train.output_dir, "eval_results.json"), "w") as f:
            json.dump(results, f, indent=2)
    return results


def _load_initial_weights(checkpointer, cfg, resume: bool) -> None:
    path = cfg.train.init_checkpoint
    if resume and checkpointer.has_checkpoint():
        checkpointer.resume_or_load(path, resume=True)
        return
    if not path:
        logger.warning(
            "train.init_checkpoint is empty: no CLIP weights are loaded and the model trains "
            "from scratch. Convert an OpenAI CLIP file with tools/convert_clip.py and pass "
            "train.init_checkpoint=FILE to start from CLIP."
        )
        return
    checkpointer.resume_or_load(path, resume=False)


def _build_scheduler(cfg, optimizer):
    scheduler_cfg = cfg.lr_multiplier
    target = scheduler_cfg._target_
    if isinstance(target, type) and issubclass(target, torch.optim.lr_scheduler.LRScheduler):
        scheduler_cfg.optimizer = optimizer
    return instantiate(scheduler_cfg)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped before the optimizer step."""


class _StopAtNonFiniteLoss:
    """Trainer mixin: checks every iteration's losses (on every process) before detectron2 logs
    them and before the optimizer step, and stops with the iteration and the non-finite losses
    by name (detectron2 checks only their sum, on the main process)."""

    def _write_metrics(self, loss_dict, data_time, prefix="", iter=None):
        values = torch.stack([value.detach().float().reshape(()) for value in loss_dict.values()])
        finite = torch.isfinite(values).tolist()
        if not all(finite):
            iteration = self.iter if iter is None else iter
            bad = [
                f"{name}={value.item()}"
                for (name, value), ok in zip(loss_dict.items(), finite)
                if not ok
            ]
            raise NonFiniteLossError(
                f"training stopped at iteration {iteration}: non-finite losses {', '.join(bad)}. "
                "This iteration's optimizer step was not applied and no checkpoint holds "
                "non-finite weights; lower optimizer.lr (or check the data of this batch) and "
                "--resume from the last checkpoint."
            )
        super()._write_metrics(loss_dict, data_time, prefix, iter)


class _Trainer(_StopAtNonFiniteLoss, SimpleTrainer):
    pass


class _AMPTrainer(_StopAtNonFiniteLoss, AMPTrainer):
    pass


def _accumulation_steps(cfg) -> int:
    """``train.grad_accumulation_steps`` (default 1), checked."""
    steps = cfg.train.get("grad_accumulation_steps", 1)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"train.grad_accumulation_steps: expected an integer ≥ 1, got {steps!r}")
    return steps


def _build_trainer(cfg, model, train_loader, optimizer):
    """detectron2's trainer (AMP with ``train.amp.enabled``), stepping the optimizer once every
    ``train.grad_accumulation_steps`` batches (:mod:`denseclip.engine.accumulation`)."""
    steps = _accumulation_steps(cfg)
    if steps > 1:
        model = AccumulateGradients(model, steps)
        train_loader = MicroBatches(train_loader, steps)
    # zero before the forward: an accumulating model back-propagates inside its forward
    options = dict(zero_grad_before_forward=True)
    if not cfg.train.amp.enabled:
        return _Trainer(model, train_loader, optimizer, **options)
    _check_devices(cfg)
    precision = getattr(torch, cfg.train.amp.get("precision", "float16"))
    trainer = _AMPTrainer(model, train_loader, optimizer, precision=precision, **options)
    if steps > 1:
        model.backward = lambda loss: trainer.grad_scaler.scale(loss).backward()
    return trainer


def _log_batch(cfg) -> None:
    steps = _accumulation_steps(cfg)
    batch = cfg.dataloader.train.get("total_batch_size")
    if batch is None:
        return
    logger.info(
        f"Effective batch: {batch} images per data-loader batch (all GPUs) × {steps} "
        f"accumulation step(s) = {batch * steps} images per optimizer step"
    )


def do_train(cfg, resume: bool = False) -> None:
    if str(cfg.train.device) == "cpu" and host_memory.keep_freed_host_memory():
        logger.info("Training on the CPU: freed host memory is kept for reuse (faster steps)")
    model = build_model(cfg)
    logger.info("Model:\n{}".format(model))
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = _ddp(model, cfg, **cfg.train.ddp)
    trainer = _build_trainer(cfg, model, train_loader, optimizer)
    _log_batch(cfg)
    scheduler = _build_scheduler(cfg, optimizer)
    checkpointer = DenseCLIPCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=scheduler),
            (
                hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
                if comm.is_main_process()
                else None
            ),
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            (
                hooks.PeriodicWriter(
                    default_writers(cfg.train.output_dir, cfg.train.max_iter),
                    period=cfg.train.log_period,
                )
                if comm.is_main_process()
                else None
            ),
        ]
    )
    _load_initial_weights(checkpointer, cfg, resume)
    resumed = resume and checkpointer.has_checkpoint()
    if resumed and isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        # The optimizer state restores the learning rates of the old schedule; the current
        # config's schedule (e.g. a longer train.max_iter) decides from the first iteration on.
        for group, lr in zip(optimizer.param_groups, scheduler.get_lr()):
            group["lr"] = lr
    # The checkpoint stores the iteration that just finished: resume at the next one.
    start_iter = trainer.iter + 1 if resumed else 0
    trainer.train(start_iter, cfg.train.max_iter)


def main(args):
    cfg = setup(args)
    if not args.eval_only:
        return do_train(cfg, resume=args.resume)
    model = build_model(cfg)
    model = _ddp(model, cfg)
    DenseCLIPCheckpointer(model, cfg.train.output_dir).load(cfg.train.init_checkpoint)
    return do_test(cfg, model)
