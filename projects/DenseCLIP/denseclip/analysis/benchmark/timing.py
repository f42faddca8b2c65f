"""Wall-clock times: one call, interleaved repeats of several calls, training steps."""

import copy
import dataclasses
import time
from typing import Callable, Dict, List, Mapping, Sequence

import torch
from torch import nn

from detectron2.config import instantiate

from .inputs import training_inputs
from .runs import ForwardSettings, forward_backward
from .variants import load_model, simulate_text_sharding


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


@dataclasses.dataclass
class TrainingStep:
    """One training step: forward with losses, backward, the optimizer step."""

    model: nn.Module  # in training mode
    optimizer: torch.optim.Optimizer  # the config's, over the model's parameters
    batch: List[Dict]  # random images with random labels
    settings: ForwardSettings

    def __call__(self) -> None:
        forward_backward(self.model, self.batch, self.settings)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def simulated_ranks_name(ranks: int) -> str:
    """The name of the DenseCLIP training step of one of ``ranks`` ranks sharing the text side."""
    return f"denseclip at {ranks} ranks"


def training_steps(
    configs: Mapping[str, object],
    names: Sequence[str],
    size: int,
    batch_size: int,
    settings: ForwardSettings,
    simulate_ranks: int = 1,
) -> Dict[str, TrainingStep]:
    """{name: training step} of the named models ("denseclip", "baseline": keys of
    ``configs``) with random weights on ``batch_size`` random size×size images; with
    ``simulate_ranks`` R > 1 and "denseclip" among the names, also
    :func:`simulated_ranks_name` (R): DenseCLIP whose text encoder encodes the ⌈K/R⌉ classes
    of one rank sharing the text side (:func:`~.variants.simulate_text_sharding`)."""
    models = [(name, name, 1) for name in names]
    if simulate_ranks > 1 and "denseclip" in names:
        models.append((simulated_ranks_name(simulate_ranks), "denseclip", simulate_ranks))
    steps = {}
    for name, config_name, ranks in models:
        cfg = copy.deepcopy(configs[config_name])
        model = load_model(cfg, None, settings.device).train()
        if ranks > 1:
            simulate_text_sharding(model, ranks)
        cfg.optimizer.params.model = model
        batch = training_inputs(cfg, size, batch_size)
        steps[name] = TrainingStep(model, instantiate(cfg.optimizer), batch, settings)
    return steps


def train_step_times(
    configs: Mapping[str, object],
    names: Sequence[str],
    size: int,
    batch_size: int,
    repeats: int,
    settings: ForwardSettings,
    simulate_ranks: int = 1,
) -> Dict[str, List[float]]:
    """Seconds per training step (forward with losses, backward, the config's optimizer step)
    of the :func:`training_steps`, interleaved after one untimed step each."""
    steps = training_steps(configs, names, size, batch_size, settings, simulate_ranks)
    return interleaved_times(steps, repeats, 1, settings.device)
