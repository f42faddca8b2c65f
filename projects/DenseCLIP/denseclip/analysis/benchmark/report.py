"""The benchmark's printed report: the table of variants, the ratios, training steps and the
time per part; the returned dict is what the last printed line holds as JSON.

``args`` is the parsed command line of ``tools/benchmark.py`` (its flags' attributes, and
``num_classes``: K of the DenseCLIP config)."""

import statistics
from typing import Dict, List, Optional

import torch

from .variants import VARIANTS

RATIOS = {
    "cached / baseline": ("denseclip", "baseline"),
    "cached / baseline (official image path)": ("denseclip-unfolded", "baseline-unfolded"),
    "official / ours": ("denseclip-official", "denseclip"),
    "official / cached (text cache alone)": ("denseclip-official", "denseclip-unfolded"),
    "onnxruntime / ours (eager)": ("denseclip-onnxruntime", "denseclip"),
}


def ratios(latency: Dict[str, float]) -> Dict[str, float]:
    """{label: latency ratio} of the :data:`RATIOS` pairs whose two variants were timed."""
    return {
        label: latency[a] / latency[b]
        for label, (a, b) in RATIOS.items()
        if a in latency and b in latency
    }


def _prediction(output: Dict) -> torch.Tensor:
    """The logits of a segmentation output; the boxes and scores (N×5) of a detection one."""
    if "sem_seg" in output:
        return output["sem_seg"].float()
    instances = output["instances"]
    return torch.cat([instances.pred_boxes.tensor, instances.scores[:, None]], dim=1).float()


def max_difference(outputs: Dict[str, List[Dict]], name: str) -> Optional[float]:
    """Largest |Δ| of a variant's logits (detection: boxes and scores) against the official one
    of its family (None when that was not run); infinite when the two detect a different
    number of objects."""
    reference = "baseline-unfolded" if VARIANTS[name].baseline else "denseclip-official"
    if reference not in outputs:
        return None
    ours, theirs = (_prediction(outputs[n][0]) for n in (name, reference))
    if ours.shape != theirs.shape:
        return float("inf")
    return (ours - theirs).abs().max().item() if ours.numel() else 0.0


def print_report(args, times, memory, outputs, train, profile) -> Dict:
    """Print the inference table, ratios, training steps and time per part; → the JSON report.

    Args:
        times: {variant: [seconds]} of the timed forwards.
        memory: {variant: {"model_mb", "peak_mb"}} (empty: not measured).
        outputs: {variant: the model's outputs} of one forward, for |Δ| vs official.
        train: {"denseclip" / "baseline": [seconds]} of the timed training steps.
        profile: {variant: {part: ms}} (:func:`~.profiling.stage_times`).
    """
    latency = {name: 1000 * statistics.median(t) for name, t in times.items()}
    threads = f", threads: {torch.get_num_threads()}" if args.device == "cpu" else ""
    print(
        f"\n{args.config_file}"
        + (f" vs {args.baseline_config_file}" if args.baseline_config_file else "")
        + "\n"
        f"{args.size}×{args.size}, K={args.num_classes}, {args.device}{threads}, "
        f"{'fp32' if args.amp == 'none' else args.amp + ' autocast'}, median of {args.repeats} "
        f"(after {args.warmup} warm-up), variants interleaved\n"
    )
    header = f"{'variant':<22} {'':<40} {'latency ms':>11} {'range':>17}"
    header += f" {'weights MB':>11} {'peak MB':>8} {'|Δ| vs official':>16}"
    print(header)
    for name, values in times.items():
        low, high = 1000 * min(values), 1000 * max(values)
        mem = memory.get(name, {})
        diff = max_difference(outputs, name)
        print(
            f"{name:<22} {VARIANTS[name].description:<40} {latency[name]:>11.1f} "
            f"{f'{low:.0f}–{high:.0f}':>17} {mem.get('model_mb', float('nan')):>11.1f} "
            f"{mem.get('peak_mb', float('nan')):>8.1f} "
            f"{'' if diff is None else f'{diff:.1e}':>16}"
        )
    found = ratios(latency)
    if found:
        print()
    for label, value in found.items():
        print(f"  {label:<42} {value:6.3f}")
    train_ms = {name: 1000 * statistics.median(t) for name, t in train.items()}
    if train_ms:
        print(f"\ntraining step (batch {args.train_batch}, median of {args.train_repeats}):")
        for name, value in train_ms.items():
            print(f"  {name:<42} {value:8.1f} ms")
        if len(train_ms) == 2:
            ratio = train_ms["denseclip"] / train_ms["baseline"]
            print(f"  {'denseclip / baseline':<42} {ratio:6.3f}")
    for name, parts in profile.items():
        print(
            f"\nwhere the time goes, {name} (ms, median of {args.repeats}): "
            + ", ".join(f"{label} {value:.0f}" for label, value in parts.items())
        )
    return {
        "latency_ms": latency,
        "memory_mb": memory,
        "ratios": found,
        "train_step_ms": train_ms,
        "profile_ms": profile,
    }


def print_train_memory(args, memory: Dict[str, Dict[str, float]]) -> Dict:
    """Print the ``--train-memory`` table and ratio of ``memory`` ({"denseclip" / "baseline":
    {"model_mb", "train_peak_mb"}}); → the JSON report."""
    paths = {"denseclip": args.config_file, "baseline": args.baseline_config_file}
    print(
        f"\npeak memory of one training forward + backward, {args.train_batch} image(s) of "
        f"{args.size}×{args.size}, {args.device}, {args.attention_kernel} attention kernel, fresh "
        "process each (MiB)\n"
    )
    print(f"{'model':<10} {'weights MB':>11} {'peak MB':>9}  config")
    for name, mem in memory.items():
        print(f"{name:<10} {mem['model_mb']:>11.1f} {mem['train_peak_mb']:>9.1f}  {paths[name]}")
    report = {"train_memory_mb": memory}
    if len(memory) == 2:
        ratio = memory["denseclip"]["train_peak_mb"] / memory["baseline"]["train_peak_mb"]
        print(f"  {'denseclip / baseline':<42} {ratio:6.3f}")
        report["ratio"] = ratio
    return report
