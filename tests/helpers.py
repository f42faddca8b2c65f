"""Shared helpers for the end-to-end tests: run the CLI in a subprocess, read its outputs.

Imported by the test modules as ``helpers`` (pytest puts ``tests/`` on ``sys.path``).
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from detectron2.config import instantiate
from detectron2.layers import FrozenBatchNorm2d

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CONFIG = "configs/Synthetic/denseclip_fpn_tiny.py"

# The warning every run without CLIP weights prints (engine._load_initial_weights).
NO_CLIP_WEIGHTS_PATTERN = r"no CLIP weights are loaded and the model trains from scratch"


@dataclass
class Run:
    """A finished subprocess: its command, exit status, stdout+stderr and wall time."""

    command: List[str]
    returncode: int
    output: str
    seconds: float

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]

    def describe(self) -> str:
        """For assertion messages: the command, exit status and the tail of the output."""
        return (
            f"\ncommand: {' '.join(self.command)}\nexit status: {self.returncode} after "
            f"{self.seconds:.1f}s\n--- output tail ---\n{self.tail()}"
        )


def subprocess_env(datasets_dir: str, **extra: str) -> Dict[str, str]:
    """The environment of a CLI run: the synthetic data under ``datasets_dir``, one thread per
    process (the test machine has 2 cores, shared with other runs), no colour codes."""
    env = dict(os.environ)
    env.update(
        DENSECLIP_DATASETS=str(datasets_dir),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        TERM="dumb",
    )
    env.update(extra)
    return env


def load_python_file(relative_path: str):
    """A Python file of the repository that is not a package module (``train_net.py``, a config
    helper) loaded as a module."""
    name = os.path.splitext(os.path.basename(relative_path))[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO_ROOT, relative_path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_python(
    args: Sequence[str], datasets_dir: str, timeout: float = 300, **extra_env: str
) -> Run:
    """Runs ``python ARGS`` in the repository root; returns a :class:`Run` (never raises on a
    non-zero exit)."""
    command = [sys.executable, *map(str, args)]
    start = time.monotonic()
    proc = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=subprocess_env(datasets_dir, **extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        timeout=timeout,
    )
    return Run(command, proc.returncode, proc.stdout, time.monotonic() - start)


def run_train_net(
    args: Sequence[str], datasets_dir: str, timeout: float = 300, **extra_env: str
) -> Run:
    """``python train_net.py ARGS`` in the repository root."""
    return run_python(["train_net.py", *args], datasets_dir, timeout, **extra_env)


def tiny_overrides(output_dir: str, max_iter: int = 4, **more) -> List[str]:
    """``key=value`` overrides that keep a tiny-config run to a few seconds."""
    values = {
        "train.max_iter": max_iter,
        "train.eval_period": max_iter,
        "train.checkpointer.period": 2,
        "train.log_period": 1,
        "dataloader.train.total_batch_size": 2,
        "train.output_dir": output_dir,
    }
    values.update(more)
    return [f"{key}={value}" for key, value in values.items()]


def labelled_batch(num_classes: int, images: int = 4, seed: int = 0) -> List[dict]:
    """64×64 images with labels (some pixels ignored), as the dataset mapper gives them."""
    generator = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(images):
        label = torch.randint(0, num_classes, (64, 64), generator=generator)
        label[torch.rand(64, 64, generator=generator) < 0.1] = 255
        image = torch.rand(3, 64, 64, generator=generator) * 255
        batch.append({"image": image, "sem_seg": label, "height": 64, "width": 64})
    return batch


def model_without_batch_statistics(cfg) -> nn.Module:
    """A segmentor config's model in float64 with frozen BatchNorms and no dropout: its loss
    over a batch is the mean of its losses over equal-sized parts of the batch."""
    cfg.model.sem_seg_head.norm = ""
    torch.manual_seed(0)
    model = FrozenBatchNorm2d.convert_frozen_batchnorm(instantiate(cfg.model))
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return model.double()


def free_port() -> int:
    """A TCP port that was free a moment ago (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_metrics(path: str) -> List[dict]:
    """The records of detectron2's ``metrics.json`` (one JSON object a line)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def write_three_class_dataset(
    root: str, classes: Sequence[str] = ("water", "sand", "rock"), size: int = 64
) -> str:
    """A tiny segmentation dataset in the folder layout with 3 classes (4 train, 2 val images):
    water above, sand below, a grey rock square, its border labelled 255 (ignore)."""
    rng = np.random.default_rng(0)
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    for split, count in (("train", 4), ("val", 2)):
        os.makedirs(os.path.join(root, "images", split))
        os.makedirs(os.path.join(root, "annotations", split))
        for index in range(count):
            labels = np.zeros((size, size), np.uint8)
            horizon = int(rng.integers(size // 4, 3 * size // 4))
            labels[horizon:] = 1
            side = int(rng.integers(size // 8, size // 3))
            y, x = (int(v) for v in rng.integers(0, size - side, 2))
            labels[y : y + side, x : x + side] = 255
            labels[y + 1 : y + side - 1, x + 1 : x + side - 1] = 2
            colors = np.array([[200, 90, 30], [120, 200, 230], [128, 128, 128]], np.float32)
            image = colors[np.minimum(labels, 2)] + rng.normal(0, 8, (size, size, 3))
            stem = f"{split}_{index}.png"
            cv2.imwrite(
                os.path.join(root, "images", split, stem), np.clip(image, 0, 255).astype(np.uint8)
            )
            cv2.imwrite(os.path.join(root, "annotations", split, stem), labels)
    return root


def eval_results(output_dir: str) -> Optional[dict]:
    path = os.path.join(output_dir, "eval_results.json")
    return read_json(path) if os.path.isfile(path) else None


def config_fields(node, key):
    """Every value of ``key`` in a nested dict / list tree (a loaded or saved config)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from config_fields(v, key)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from config_fields(item, key)


def tiny_openai_clip():
    """OpenAI CLIP's own model at toy widths (RN, one block per stage), random weights."""
    from clip import model as openai

    return openai.CLIP(
        embed_dim=32,
        image_resolution=64,
        vision_layers=(1, 1, 1, 1),
        vision_width=16,
        vision_patch_size=None,
        context_length=77,
        vocab_size=49408,
        transformer_width=32,
        transformer_heads=2,
        transformer_layers=1,
    )


def tiny_openai_clip_vit(embed_dim: int, image_resolution: int, vision_layers: int):
    """OpenAI CLIP's own model with a ViT-/16 image encoder of width 64 (one head: OpenAI gives
    width // 64) and a 2-layer text encoder of width 64 with 4 heads; random weights, eval mode."""
    from clip import model as openai

    return openai.CLIP(
        embed_dim=embed_dim,
        image_resolution=image_resolution,
        vision_layers=vision_layers,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=4,
        transformer_layers=2,
    ).eval()


def evaluate_in_process(
    config: str, overrides: Sequence[str], checkpoint: str, tta: Optional[Dict] = None
) -> Dict[str, Dict[str, float]]:
    """The results of ``checkpoint`` on ``config`` with ``overrides`` ({task: {metric: value}}):
    detectron2's ``inference_on_dataset`` with the config's test loader and evaluator, to compare
    with what a command line reported. ``tta``: the arguments of
    :class:`~denseclip.meta_arch.SemanticSegmentorWithTTA`, which then wraps the model while the
    test images stay at their size (as ``--aug-test`` evaluates)."""
    from detectron2.evaluation import inference_on_dataset

    from denseclip.checkpoint import DenseCLIPCheckpointer
    from denseclip.config import load_config
    from denseclip.meta_arch import SemanticSegmentorWithTTA

    cfg, _ = load_config(os.path.join(REPO_ROOT, config), overrides)
    model = instantiate(cfg.model).eval()
    DenseCLIPCheckpointer(model).load(checkpoint)
    if tta is not None:
        cfg.dataloader.test.mapper.augmentations = []
        model = SemanticSegmentorWithTTA(model, **tta)
    loader, evaluator = instantiate(cfg.dataloader.test), instantiate(cfg.dataloader.evaluator)
    with torch.no_grad():
        return inference_on_dataset(model, loader, evaluator)


def assert_same_results(reported: Dict[str, float], expected: Dict[str, float]) -> None:
    """What a command line reported equals an in-process evaluation, metric by metric."""
    assert reported.keys() == expected.keys()
    for metric, value in expected.items():
        assert reported[metric] == pytest.approx(value, abs=1e-6, nan_ok=True), metric
