"""The benchmark's printed report: the table of variants, the ratios, training steps and the
time per part; the returned dict is what the last printed line holds as JSON.

``args`` is the parsed command line of ``tools/benchmark.py`` (its flags' attributes, and
``num_classes``: K of the DenseCLIP config)."""

import statistics
from typing import Dict, List, Optional

import torch

from .timing import simulated_ranks_name
from .train_profiling import STAGES
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


def _device_and_precision(args) -> str:
    """ "cpu, threads: 4, freed host memory kept, fp32", "cuda, bf16 autocast", ..."""
    cpu_settings = ""
    if args.device == "cpu":
        kept = "kept" if args.keep_host_memory else "released"
        cpu_settings = f", threads: {torch.get_num_threads()}, freed host memory {kept}"
    precision = "fp32" if args.amp == "none" else args.amp + " autocast"
    return f"{args.device}{cpu_settings}, {precision}"


def _baseline_ratios(ms: Dict[str, float]) -> Dict[str, float]:
    """{"NAME / baseline": ratio} of every timed step but the baseline's, when it was timed."""
    if "baseline" not in ms:
        return {}
    return {
        f"{name} / baseline": value / ms["baseline"]
        for name, value in ms.items()
        if name != "baseline"
    }


def _print_simulated_ranks(args, steps: Dict[str, object]) -> None:
    """What the simulated-ranks step is, when one ran (``args.simulate_ranks`` R > 1)."""
    if simulated_ranks_name(args.simulate_ranks) in steps:
        ranks, classes = args.simulate_ranks, args.num_classes
        print(
            f"  ({simulated_ranks_name(ranks)}: one rank's step with the text side shared, "
            f"simulated in one process: the text encoder encodes {-(-classes // ranks)} of the "
            f"{classes} classes, no communication)"
        )


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
    print(
        f"\n{args.config_file}"
        + (f" vs {args.baseline_config_file}" if args.baseline_config_file else "")
        + "\n"
        f"{args.size}×{args.size}, K={args.num_classes}, {_device_and_precision(args)}, "
        f"median of {args.repeats} (after {args.warmup} warm-up), variants interleaved\n"
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
    train_ratios = _baseline_ratios(train_ms)
    if train_ms:
        print(f"\ntraining step (batch {args.train_batch}, median of {args.train_repeats}):")
        for name, value in train_ms.items():
            print(f"  {name:<42} {value:8.1f} ms")
        for label, value in train_ratios.items():
            print(f"  {label:<42} {value:6.3f}")
        _print_simulated_ranks(args, train_ms)
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
        "train_step_ratios": train_ratios,
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


def _profile_cells(forward: Optional[float], backward: Optional[float], total: float) -> str:
    cells = ["" if v is None else f"{v:.1f}" for v in (forward, backward)] + [f"{total:.1f}"]
    return "".join(f"{cell:>10}" for cell in cells)


def print_train_profile(args, profiles: Dict[str, Dict]) -> Dict:
    """Print the ``--train-profile`` table: ms per stage of the forward and the backward pass of
    each training step of ``profiles`` ({name: profile of
    :func:`~.train_profiling.train_stage_times`}), the optimizer step, the whole step and the
    step without hooks, and the ratios of the steps without hooks; → the JSON report."""
    print(
        f"\nwhere the time of one training step goes (ms): batch {args.train_batch}, "
        f"{args.size}×{args.size}, K={args.num_classes}, {_device_and_precision(args)}, median "
        f"of {args.train_repeats} (after 1 warm-up), steps interleaved\n"
    )
    print(f"{'':<24}" + "".join(f"{name:>30}" for name in profiles))
    print(f"{'stage':<24}" + f"{'forward':>10}{'backward':>10}{'total':>10}" * len(profiles))

    def row(label: str, cells) -> None:
        print(f"{label:<24}" + "".join(cells))

    for stage in STAGES:
        passes = [(p["forward"][stage], p["backward"][stage]) for p in profiles.values()]
        row(stage, [_profile_cells(f, b, f + b) for f, b in passes])
    row(
        "optimizer step",
        [_profile_cells(None, None, p["optimizer step"]) for p in profiles.values()],
    )
    hooked = {
        name: (p["forward"]["total"], p["backward"]["total"], p["optimizer step"])
        for name, p in profiles.items()
    }
    unhooked = {
        name: tuple(p["unhooked"][part] for part in ("forward", "backward", "optimizer step"))
        for name, p in profiles.items()
    }
    for label, steps in (("step", hooked), ("step without hooks", unhooked)):
        row(label, [_profile_cells(f, b, f + b + o) for f, b, o in steps.values()])
    found = _baseline_ratios({name: sum(parts) for name, parts in unhooked.items()})
    for label, value in found.items():
        print(f"  {label + ' (steps without hooks)':<50} {value:6.3f}")
    _print_simulated_ranks(args, profiles)
    return {"train_profile_ms": profiles, "train_step_ratios": found}
