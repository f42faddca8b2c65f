"""Training and evaluation with LazyConfigs (the logic behind ``train_net.py``).

Follows detectron2's ``tools/lazyconfig_train_net.py`` and adds what DenseCLIP needs: CPU
DistributedDataParallel, dataset-driven class prompts, torch LR schedulers that need the
optimizer, evaluation results written as JSON, and a clear word when no CLIP weights are given.
"""

import copy
import json
import logging
import os
from typing import Dict, Mapping, Optional

import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.engine import AMPTrainer, SimpleTrainer, default_setup, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from .checkpoint import DenseCLIPCheckpointer
from .config import dataset_class_names, set_class_names
from .data import parse_dataset_arg, register_folder_dataset
from .meta_arch import SemanticSegmentorWithTTA

__all__ = ["setup", "build_model", "do_test", "do_train", "main"]

logger = logging.getLogger("detectron2")


def setup(args):
    """Loads the config, registers ``--dataset`` folders, applies overrides and the dataset's
    classes, and sets up logging and the output folder (detectron2's ``default_setup``)."""
    for spec in args.dataset or ():
        register_folder_dataset(*parse_dataset_arg(spec))
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if getattr(args, "aug_test", False):
        cfg = LazyConfig.apply_overrides(cfg, ["tta.enabled=True"])
    split = "test" if args.eval_only else "train"
    class_names = dataset_class_names(cfg.dataloader[split].dataset.names)
    changed = class_names is not None and set_class_names(cfg.model, class_names)
    default_setup(cfg, args)  # saves config.yaml: after the classes are set
    if changed:
        logger.info(f"Model set to the dataset's {len(class_names)} classes: {class_names}")
    return cfg


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
    if not os.path.isfile(path) and "://" not in path:
        raise FileNotFoundError(f"train.init_checkpoint: no file at {path!r}")
    checkpointer.resume_or_load(path, resume=False)


def _build_scheduler(cfg, optimizer):
    scheduler_cfg = cfg.lr_multiplier
    target = scheduler_cfg._target_
    if isinstance(target, type) and issubclass(target, torch.optim.lr_scheduler.LRScheduler):
        scheduler_cfg.optimizer = optimizer
    return instantiate(scheduler_cfg)


def _build_trainer(cfg, model, train_loader, optimizer):
    amp = cfg.train.amp
    if not amp.enabled:
        return SimpleTrainer(model, train_loader, optimizer)
    if cfg.train.device != "cuda":
        raise ValueError("train.amp.enabled=True needs CUDA (train.device is 'cpu')")
    precision = getattr(torch, amp.get("precision", "float16"))
    return AMPTrainer(model, train_loader, optimizer, precision=precision)


def do_train(cfg, resume: bool = False) -> None:
    model = build_model(cfg)
    logger.info("Model:\n{}".format(model))
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = _ddp(model, cfg, **cfg.train.ddp)
    trainer = _build_trainer(cfg, model, train_loader, optimizer)
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
    if not cfg.train.init_checkpoint:
        raise ValueError("--eval-only needs the weights to evaluate: train.init_checkpoint=FILE")
    model = build_model(cfg)
    model = _ddp(model, cfg)
    DenseCLIPCheckpointer(model, cfg.train.output_dir).load(cfg.train.init_checkpoint)
    return do_test(cfg, model)
