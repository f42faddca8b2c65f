"""Peak memory of a call above the memory in use before it: on CUDA the allocator's peak, on
CPU the peak resident set size that Linux reports in ``/proc/self/status``."""

import ctypes
import statistics
from typing import Callable, Dict, List

import torch
from torch import nn

from .inputs import training_inputs
from .runs import ForwardSettings, forward_backward, inference_run
from .variants import load_model, weights_mb

PROC_STATUS = "/proc/self/status"


def proc_status_kb(field: str, path: str = PROC_STATUS) -> int:
    """A kB field of ``/proc/self/status`` ("VmRSS": resident set size, "VmHWM": its peak)."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{path} has no {field}")


def peak_memory_mb(run: Callable, device: str) -> float:
    """Peak memory of one call above the memory in use before it, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` above the allocated memory before the call. CPU:
    the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) above the
    resident size before the call, after glibc's ``malloc_trim`` has returned freed memory.
    """
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages back to the OS: RSS = live memory
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident set size, to the current size
    before = proc_status_kb("VmRSS")
    run()
    return (proc_status_kb("VmHWM") - before) / 1024


def inference_memory(model: nn.Module, inputs: List[Dict], settings: ForwardSettings):
    """{"model_mb", "peak_mb"}: a variant's weights and the median peak memory of three
    inference calls after a warm-up call (caches, allocator pools), in MiB. Run it in a fresh
    process: the peak resident set size counts everything the process touched before."""
    run = inference_run(model, inputs, settings)
    run()
    peaks = [peak_memory_mb(run, settings.device) for _ in range(3)]
    return {"model_mb": weights_mb(model), "peak_mb": statistics.median(peaks)}


def training_memory(cfg, size: int, batch_size: int, settings: ForwardSettings) -> Dict[str, float]:
    """{"model_mb", "train_peak_mb"}: the weights of the config's model and the peak memory of
    one training forward + backward on ``batch_size`` random size×size images, after one
    untimed step, the gradients freed before it (MiB). Run it in a fresh process."""
    model = load_model(cfg, None, settings.device).train()
    batch = training_inputs(cfg, size, batch_size)
    forward_backward(model, batch, settings)  # warm-up: caches, allocator pools
    model.zero_grad(set_to_none=True)
    peak = peak_memory_mb(lambda: forward_backward(model, batch, settings), settings.device)
    return {"model_mb": weights_mb(model), "train_peak_mb": peak}
