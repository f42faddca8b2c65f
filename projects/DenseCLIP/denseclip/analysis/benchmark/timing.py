"""Wall-clock times: one call, interleaved repeats of several calls, training steps."""

import copy
import time
from typing import Callable, Dict, List, Mapping, Sequence

import torch

from detectron2.config import instantiate

from .inputs import training_inputs
from .runs import ForwardSettings, forward_backward
from .variants import load_model


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that a clock reading includes it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(run: Callable, device: str) -> float:
    """Wall-clock seconds of one call, device work included."""
    sync(device)
    start = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - start


def interleaved_times(
    runs: Dict[str, Callable], repeats: int, warmup: int, device: str
) -> Dict[str, List[float]]:
    """{name: [seconds]} of ``repeats`` timed calls of each run, after ``warmup`` untimed rounds,
    in alternating order (A B C, C B A, ...) so that load changes on a shared machine hit the
    runs alike."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times = {name: [] for name in names}
    for index in range(repeats):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(timed(runs[name], device))
    return times


def train_step_times(
    configs: Mapping[str, object],
    names: Sequence[str],
    size: int,
    batch_size: int,
    repeats: int,
    settings: ForwardSettings,
) -> Dict[str, List[float]]:
    """Seconds per training step (forward with losses, backward, the config's optimizer step)
    of the named models ("denseclip", "baseline": keys of ``configs``) with random weights, on
    ``batch_size`` random size×size images with random labels, interleaved after one untimed
    step each."""
    steps = {}
    for name in names:
        cfg = copy.deepcopy(configs[name])
        model = load_model(cfg, None, settings.device).train()
        cfg.optimizer.params.model = model
        optimizer = instantiate(cfg.optimizer)
        batch = training_inputs(cfg, size, batch_size)

        def step(model=model, optimizer=optimizer, batch=batch):
            forward_backward(model, batch, settings)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    return interleaved_times(steps, repeats, 1, settings.device)
