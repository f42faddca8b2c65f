"""Where the time of a forward goes: milliseconds per part of the model, and torch.profiler's
operator table."""

import statistics
import time
from typing import Callable, Dict

import torch
from torch import nn

from .timing import sync, timed

# label → the module names that part can have; segmentation; RetinaNet; R-CNN heads
TIMED_MODULES = {
    "image encoder": ("backbone.bottom_up.image_encoder",),
    "text encoder": ("backbone.bottom_up.prompts",),
    "context decoder": ("backbone.bottom_up.context_decoder",),
    "bottom-up": ("backbone.bottom_up",),
    "backbone": ("backbone",),
    "decode head": ("sem_seg_head", "head", "proposal_generator", "roi_heads"),
}


def exclusive_ms(inclusive: Dict[str, float], total: float) -> Dict[str, float]:
    """Inclusive seconds of the :data:`TIMED_MODULES` parts and of the whole call → exclusive
    milliseconds: the score maps are the rest of the bottom-up, the FPN the rest of the
    backbone, the meta-arch the rest of the call."""
    parts = ("image encoder", "text encoder", "context decoder")
    ms = {label: 1000 * inclusive.get(label, 0.0) for label in parts}
    ms["score maps"] = 1000 * inclusive["bottom-up"] - sum(ms.values())
    ms["FPN"] = 1000 * (inclusive["backbone"] - inclusive["bottom-up"])
    ms["decode head"] = 1000 * inclusive.get("decode head", 0.0)
    ms["meta-arch"] = 1000 * total - ms["decode head"] - 1000 * inclusive["backbone"]
    ms["total"] = 1000 * total
    return ms


def stage_times(model: nn.Module, run: Callable, device: str, repeats: int) -> Dict[str, float]:
    """Milliseconds spent in the model's parts (median of ``repeats`` calls): image encoder,
    text encoder, context decoder, score maps (the rest of the bottom-up), FPN, decode head
    (detection: the heads) and the meta-architecture's own work (normalisation, slide windows,
    resizing, detection post-processing)."""
    modules = dict(model.named_modules())
    inclusive, starts, handles = {}, {}, []
    for label, names in TIMED_MODULES.items():
        for name in (n for n in names if n in modules):

            def pre_hook(module, inputs, label=label):
                sync(device)
                starts[label] = time.perf_counter()

            def post_hook(module, inputs, outputs, label=label):
                sync(device)
                inclusive[label] = inclusive.get(label, 0.0) + time.perf_counter() - starts[label]

            handles += [
                modules[name].register_forward_pre_hook(pre_hook),
                modules[name].register_forward_hook(post_hook),
            ]
    calls = []
    try:
        for _ in range(repeats):
            inclusive.clear()
            calls.append(exclusive_ms(inclusive, timed(run, device)))
    finally:
        for handle in handles:
            handle.remove()
    return {label: statistics.median(call[label] for call in calls) for label in calls[0]}


def operator_table(run: Callable, device: str) -> str:
    """torch.profiler's table of the 12 operators with the most self time in one call."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        run()
    sort_by = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort_by, row_limit=12)
