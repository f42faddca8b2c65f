#!/usr/bin/env python
"""Inference latency and peak memory of DenseCLIP, its official forward and the CLIP baseline,
and their training-step times, side by side in one run.

    python tools/benchmark.py                       # RN50 Semantic FPN, 512×512, K=150, CPU
    python tools/benchmark.py --device cuda --amp bf16
    python tools/benchmark.py --config-file configs/Synthetic/denseclip_fpn_tiny.py \\
        --baseline-config-file configs/Synthetic/fpn_clip_tiny.py --size 128 --repeats 2
    python tools/benchmark.py --variants denseclip --size 1024 --train-memory --train-batch 1 \\
        --config-file configs/COCO/retinanet_denseclip_vit-b_sfp_100ep_coco.py
    python tools/benchmark.py --train-profile --train-batch 4 --simulate-ranks 8

Semantic segmentation and detection configs (RetinaNet, Mask R-CNN) are both accepted; the two
configs must be of the same kind.

Inference variants (one image, ``torch.no_grad``, the model's own slide/whole inference):

  denseclip            cached class text embeddings, BatchNorm folded: our inference path
                       (what ``denseclip.Predictor`` runs)
  denseclip-unfolded   cached text embeddings, the official image path (BatchNorm kept)
  denseclip-official   the official forward: the text encoder runs at every forward
  baseline             CLIP + Semantic FPN, BatchNorm folded (our image path)
  baseline-unfolded    CLIP + Semantic FPN, the official image path
  denseclip-onnxruntime  the denseclip variant exported to ONNX (tools/export_model.py: text
                       embeddings as constants, BatchNorm folded) run by ONNX Runtime on CPU
                       with as many threads as torch, through the same window logic; its
                       weights column is the size of model.onnx

Fairness: the official variant is the official computation, never slowed down; the optimised
image path (BatchNorm folding) is applied to DenseCLIP and the baseline alike, so that
"cached / baseline" compares equal image paths, and "official / ours" is what a user gains over
the official code. "official / cached" isolates the text cache (same image path).

Latency: median (and range) of --repeats timed forwards after --warmup untimed ones, the
variants interleaved (A B C, C B A, ...) so that load changes on a shared machine hit them
alike. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the memory before the
forward; on CPU the peak resident set size above the resident size before the forward (Linux
``VmHWM``, reset through ``/proc/self/clear_refs``, after glibc's ``malloc_trim`` has returned
freed memory), each variant measured after a warm-up forward in a fresh process. Training step:
forward with losses, backward and an optimizer step (the config's optimizer) on random images
and labels (detection: two random boxes per image, with masks for Mask R-CNN).
``--train-memory`` instead measures only the peak memory of one training forward + backward
of each config (``--train-batch`` images), each in a fresh process after one untimed step, the
gradients freed before it: the peak above the memory in use before it (CPU: resident set size
as above), that is activations, gradients and temporaries, beside the weights.
``--train-profile`` instead times the stages of training steps (image encoder, attention pool,
text encoder, context decoder, score maps + auxiliary loss, FPN + head), forward and backward
apart, and the optimizer step, each step followed by the same step without hooks
(``denseclip.analysis.benchmark.train_profiling``). ``--simulate-ranks R`` adds DenseCLIP's
training step on one of R data-parallel ranks that share the text side
(``model.backbone.bottom_up.prompts.shard_text_across_ranks=True``): its text encoder encodes
⌈K/R⌉ classes, the rest of the step unchanged (the gather's communication is not simulated),
timed beside the others and compared with the baseline. Prints a table, the ratios, and last a
JSON line. Weights are random unless --weights/--baseline-weights are
given: latency does not depend on them.
"""

import argparse
import json
import os
import sys
import tempfile
from typing import Dict, Optional, Sequence

import torch

from denseclip.analysis.benchmark import (
    AMP_DTYPES,
    VARIANTS,
    ForwardSettings,
    build_variants,
    detection_variants,
    in_fresh_processes,
    inference_memory,
    inference_run,
    interleaved_times,
    is_detector,
    model_of,
    num_classes,
    operator_table,
    print_report,
    print_train_memory,
    print_train_profile,
    random_inputs,
    stage_times,
    train_stage_times,
    train_step_times,
    training_memory,
    training_steps,
)
from denseclip.config import load_config
from denseclip.engine import host_memory

DENSECLIP_CONFIG = "configs/ADE20K/denseclip_fpn_res50_512x512_80k.py"
BASELINE_CONFIG = "configs/ADE20K/fpn_clipres50_512x512_80k.py"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default=DENSECLIP_CONFIG, metavar="FILE")
    parser.add_argument("--baseline-config-file", default=BASELINE_CONFIG, metavar="FILE")
    parser.add_argument("--weights", help="DenseCLIP checkpoint (default: random weights)")
    parser.add_argument("--baseline-weights", help="baseline checkpoint (default: random)")
    parser.add_argument("--size", type=int, default=512, help="square image side (512)")
    parser.add_argument("--repeats", type=int, default=10, help="timed forwards per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards per variant")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        metavar="NAME",
        help="default: all (on CUDA all but denseclip-onnxruntime)",
    )
    parser.add_argument(
        "--train-repeats", type=int, default=3, help="timed training steps (0: none)"
    )
    parser.add_argument("--train-batch", type=int, default=2, help="images per training step")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--train-memory",
        action="store_true",
        help="measure only the peak memory of one training forward + backward (--train-batch "
        "images) of DenseCLIP and the baseline (as --variants asks), each in a fresh process",
    )
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument(
        "--train-profile",
        action="store_true",
        help="time only the stages of training steps (--train-batch images, median of "
        "--train-repeats), forward and backward apart, of DenseCLIP and the baseline (as "
        "--variants asks)",
    )
    parser.add_argument(
        "--simulate-ranks",
        type=int,
        default=1,
        metavar="R",
        help="also time DenseCLIP's training step on one of R ranks sharing the text side: "
        "the text encoder encodes ceil(K/R) classes (1: not)",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda"
    )
    parser.add_argument("--amp", choices=["none", *AMP_DTYPES], default="none")
    parser.add_argument(
        "--attention-kernel",
        choices=["fused", "math"],
        default="fused",
        help="scaled_dot_product_attention as PyTorch picks it (fused: the attention matrix is "
        "never stored) or its math kernel (the matrix materialised and kept for the backward "
        "pass, as ViTDet's own attention does)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--release-host-memory",
        action="store_true",
        help="CPU timings with glibc's default malloc, which unmaps large freed blocks (default: "
        "freed host memory is kept for reuse, as CUDA's caching allocator keeps GPU memory; "
        "see denseclip.engine.host_memory)",
    )
    parser.add_argument("--memory-of", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument(
        "--train-memory-of", choices=["denseclip", "baseline"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="overrides of both configs, key=value ...",
    )
    return parser


def parse_args(argv: Optional[Sequence[str]] = None):
    parser = argument_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.default_variants = args.variants is None
    if args.variants is None:
        on_cpu = args.device == "cpu"
        args.variants = [name for name, v in VARIANTS.items() if on_cpu or not v.exported]
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.simulate_ranks < 1:
        parser.error(f"--simulate-ranks must be at least 1, got {args.simulate_ranks}")
    if args.train_profile and args.train_repeats < 1:
        parser.error("--train-profile times --train-repeats steps: give at least 1")
    on_gpu = args.device.startswith("cuda")
    if args.amp == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        parser.error("--amp bf16: this GPU does not support bfloat16; use --amp fp16")
    args.settings = ForwardSettings(args.device, args.amp, args.attention_kernel)
    args.keep_host_memory = args.device == "cpu" and not args.release_host_memory
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="denseclip_benchmark_") as args.export_dir:
        return benchmark(args)


def _variants(args, names: Sequence[str]):
    """The named variants' models, from the loaded configs and the --weights flags."""
    weights = {"denseclip": args.weights, "baseline": args.baseline_weights}
    return build_variants(names, args.configs, weights, args.device, args.export_dir)


def _in_fresh_processes(args, flag: str, names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """{name: measurement} of this tool run with ``FLAG NAME`` in a fresh process each."""
    return in_fresh_processes(os.path.abspath(__file__), flag, names, args.argv)


def benchmark(args) -> Dict:
    """Everything :func:`main` reports, for parsed arguments (``args.export_dir``: a folder for
    the ONNX export)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, _ = load_config(args.config_file, args.opts)
    if is_detector(cfg):
        args.variants = detection_variants(args.variants, args.default_variants)
    # the models the variants ask for: "denseclip", "baseline" or both
    args.models = [
        m for m in ("denseclip", "baseline") if m in {model_of(v) for v in args.variants}
    ]
    if "baseline" not in args.models:
        args.baseline_config_file, baseline_cfg = None, cfg
    else:
        baseline_cfg, _ = load_config(args.baseline_config_file, args.opts)
    if is_detector(cfg) != is_detector(baseline_cfg):
        kinds = {True: "a detector", False: "a semantic segmentation model"}
        raise ValueError(
            f"{args.config_file} is {kinds[is_detector(cfg)]} but "
            f"{args.baseline_config_file} is {kinds[is_detector(baseline_cfg)]}: compare "
            "models of the same kind"
        )
    args.configs = {"denseclip": cfg, "baseline": baseline_cfg}
    args.num_classes = num_classes(cfg)
    if args.memory_of:
        model = _variants(args, [args.memory_of])[args.memory_of]
        print(json.dumps(inference_memory(model, random_inputs(args.size), args.settings)))
        return {}
    if args.train_memory_of:
        model_cfg = args.configs[args.train_memory_of]
        print(json.dumps(training_memory(model_cfg, args.size, args.train_batch, args.settings)))
        return {}
    if args.train_memory:
        memory = _in_fresh_processes(args, "--train-memory-of", args.models)
        report = print_train_memory(args, memory)
        print(json.dumps(report))
        return report

    # timings only: the memory measurements above and below run in fresh processes
    if args.keep_host_memory:
        host_memory.keep_freed_host_memory()
    if args.train_profile:
        sizes = (args.size, args.train_batch)
        steps = training_steps(
            args.configs, args.models, *sizes, args.settings, args.simulate_ranks
        )
        report = print_train_profile(args, train_stage_times(steps, args.train_repeats))
        print(json.dumps(report))
        return report

    models = _variants(args, args.variants)
    inputs = random_inputs(args.size)
    runs = {name: inference_run(model, inputs, args.settings) for name, model in models.items()}
    outputs = {name: run() for name, run in runs.items()}
    times = interleaved_times(runs, args.repeats, args.warmup, args.device)
    profile = {}
    if args.profile:
        for name in [n for n in ("denseclip", "denseclip-official") if n in runs]:
            profile[name] = stage_times(models[name], runs[name], args.device, args.repeats)
            print(f"\ntorch.profiler, {name}:")
            print(operator_table(runs[name], args.device))
    del models, runs
    memory = {} if args.no_memory else _in_fresh_processes(args, "--memory-of", args.variants)
    train = {}
    if args.train_repeats:
        sizes = (args.size, args.train_batch, args.train_repeats)
        train = train_step_times(
            args.configs, args.models, *sizes, args.settings, args.simulate_ranks
        )
    report = print_report(args, times, memory, outputs, train, profile)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
