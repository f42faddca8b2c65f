"""Inference latency, peak memory and training-step time of DenseCLIP beside its CLIP baseline
(``tools/benchmark.py`` is its command line).

variants: what is timed; inputs: random images and labels; runs: device, precision and the
calls; timing: wall-clock times and training steps; profiling: time per part of the model's
forward; train_profiling: time per stage of a training step's forward and backward passes;
memory: peak memory of a call; runner: measurements in fresh processes; report: the printed
tables.
"""

from .inputs import is_detector, num_classes, random_inputs, training_inputs
from .memory import inference_memory, peak_memory_mb, training_memory
from .profiling import operator_table, stage_times
from .report import print_report, print_train_memory, print_train_profile, ratios
from .runner import in_fresh_processes
from .runs import AMP_DTYPES, ForwardSettings, forward_backward, inference_run, training_loss
from .timing import (
    TrainingStep,
    interleaved_times,
    simulated_ranks_name,
    timed,
    train_step_times,
    training_steps,
)
from .train_profiling import STAGES, train_stage_times
from .variants import (
    VARIANTS,
    SimulatedRankText,
    Variant,
    build_variants,
    detection_variants,
    model_of,
    simulate_text_sharding,
)

__all__ = [
    "AMP_DTYPES",
    "ForwardSettings",
    "STAGES",
    "SimulatedRankText",
    "TrainingStep",
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
    "print_train_profile",
    "random_inputs",
    "ratios",
    "simulate_text_sharding",
    "simulated_ranks_name",
    "stage_times",
    "timed",
    "train_stage_times",
    "train_step_times",
    "training_inputs",
    "training_loss",
    "training_memory",
    "training_steps",
]
