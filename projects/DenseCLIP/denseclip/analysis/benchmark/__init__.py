"""Inference latency, peak memory and training-step time of DenseCLIP beside its CLIP baseline
(``tools/benchmark.py`` is its command line).

variants: what is timed; inputs: random images and labels; runs: device, precision and the
calls; timing: wall-clock times; profiling: time per part of the model; memory: peak memory of
a call; runner: measurements in fresh processes; report: the printed table.
"""

from .inputs import is_detector, num_classes, random_inputs, training_inputs
from .memory import inference_memory, peak_memory_mb, training_memory
from .profiling import operator_table, stage_times
from .report import print_report, print_train_memory, ratios
from .runner import in_fresh_processes
from .runs import AMP_DTYPES, ForwardSettings, forward_backward, inference_run
from .timing import interleaved_times, timed, train_step_times
from .variants import VARIANTS, Variant, build_variants, detection_variants, model_of

__all__ = [
    "AMP_DTYPES",
    "ForwardSettings",
    "VARIANTS",
    "Variant",
    "build_variants",
    "detection_variants",
    "forward_backward",
    "in_fresh_processes",
    "inference_memory",
    "inference_run",
    "interleaved_times",
    "is_detector",
    "model_of",
    "num_classes",
    "operator_table",
    "peak_memory_mb",
    "print_report",
    "print_train_memory",
    "random_inputs",
    "ratios",
    "stage_times",
    "timed",
    "train_step_times",
    "training_inputs",
    "training_memory",
]
