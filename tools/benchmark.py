#!/usr/bin/env python
"""Inference latency and peak memory of DenseCLIP, its official forward and the CLIP baseline,
and their training-step times, side by side in one run.

    python tools/benchmark.py                       # RN50 Semantic FPN, 512×512, K=150, CPU
    python tools/benchmark.py --device cuda --amp bf16
    python tools/benchmark.py --config-file configs/Synthetic/denseclip_fpn_tiny.py \\
        --baseline-config-file configs/Synthetic/fpn_clip_tiny.py --size 128 --repeats 2
    python tools/benchmark.py --variants denseclip --size 1024 --train-memory --train-batch 1 \\
        --config-file configs/COCO/retinanet_denseclip_vit-b_sfp_100ep_coco.py

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
as above), that is activations, gradients and temporaries, beside the weights. Prints a table,
the ratios, and last a JSON line. Weights are random unless --weights/--baseline-weights are
given: latency does not depend on them.
"""

import argparse
import contextlib
import copy
import ctypes
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from detectron2.config import instantiate
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from denseclip.backbone import DenseCLIPBackbone
from denseclip.checkpoint import DenseCLIPCheckpointer
from denseclip.export import export_model
from denseclip.export import ExportedPredictor
from denseclip.inference.fuse import fold_batch_norms
from denseclip.config import load_config
from denseclip.prompting import ClassTextPrompts

DENSECLIP_CONFIG = "configs/ADE20K/denseclip_fpn_res50_512x512_80k.py"
BASELINE_CONFIG = "configs/ADE20K/fpn_clipres50_512x512_80k.py"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    baseline: bool  # CLIP + Semantic FPN, no text side
    official_text: bool  # the text encoder runs at every forward
    fold_bn: bool  # our inference path
    exported: bool = False  # the ONNX export of the model, run by ONNX Runtime


VARIANTS = {
    v.name: v
    for v in (
        Variant("denseclip", "cached text, BN folded (ours)", False, False, True),
        Variant("denseclip-unfolded", "cached text, official image path", False, False, False),
        Variant("denseclip-official", "text encoder every forward (official)", False, True, False),
        Variant("baseline", "CLIP + Semantic FPN, BN folded", True, False, True),
        Variant("baseline-unfolded", "CLIP + Semantic FPN (official)", True, False, False),
        Variant("denseclip-onnxruntime", "ONNX export in ONNX Runtime", False, False, True, True),
    )
}


class OfficialTextEncoding(nn.Module):
    """The official forward's text side: the text encoder runs at every call (official
    ``DenseCLIP.after_extract_feat``), instead of returning the cached embeddings."""

    def __init__(self, prompts: ClassTextPrompts):
        super().__init__()
        self.prompts = prompts

    def forward(self) -> torch.Tensor:
        """→ 1×K×C class text embeddings, computed afresh."""
        return self.prompts.text_encoder(self.prompts.class_tokens, self.prompts.contexts)


class ONNXRuntimeSegmentor:
    """The ONNX export of a segmentor behind the model's call interface (a list of input dicts
    → a list of output dicts), run by ONNX Runtime (:class:`ExportedPredictor`)."""

    def __init__(self, model: nn.Module, cfg, export_dir: str):
        path, _ = export_model(model, "onnx", export_dir)
        self.predictor = ExportedPredictor(cfg, path)
        self.file_mb = os.path.getsize(path) / 2**20

    def __call__(self, inputs: List[Dict]) -> List[Dict]:
        return [self.predictor.run(x) for x in inputs]


# ----------------------------------------------------------------------------- models


def _model_of(variant: str) -> str:
    """The model a variant runs: "baseline" or "denseclip"."""
    return "baseline" if VARIANTS[variant].baseline else "denseclip"


def _load_model(cfg, weights: Optional[str], device: str) -> nn.Module:
    model = instantiate(cfg.model).to(device).eval()
    if weights:
        DenseCLIPCheckpointer(model).load(weights)
    return model


def build_variants(args, names: Sequence[str]) -> Dict[str, nn.Module]:
    """Eval-mode models of the named variants; unfolded ones share their weights."""
    loaded: Dict[bool, nn.Module] = {}
    models = {}
    for name in names:
        variant = VARIANTS[name]
        if variant.baseline not in loaded:
            cfg = args.baseline_cfg if variant.baseline else args.cfg
            weights = args.baseline_weights if variant.baseline else args.weights
            loaded[variant.baseline] = _load_model(cfg, weights, args.device)
        model = loaded[variant.baseline]
        if variant.exported:
            if args.device != "cpu":
                raise ValueError(f"{name} runs on the CPU only, not --device {args.device}")
            models[name] = ONNXRuntimeSegmentor(model, args.cfg, args.export_dir)
            continue
        if variant.official_text or variant.fold_bn:
            model = copy.deepcopy(model)
        if variant.official_text:
            for backbone in [m for m in model.modules() if isinstance(m, DenseCLIPBackbone)]:
                backbone.prompts = OfficialTextEncoding(backbone.prompts)
        if variant.fold_bn:
            fold_batch_norms(model)
        models[name] = model
    return models


def random_inputs(size: int, count: int = 1) -> List[Dict]:
    """``count`` model inputs with random size×size images (the same ones in every process)."""
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, size, size, generator=generator) * 255} for _ in range(count)]


def is_detector(cfg) -> bool:
    """A RetinaNet / R-CNN config (else a semantic segmentation one, with ``sem_seg_head``)."""
    return "sem_seg_head" not in cfg.model


def num_classes(cfg) -> int:
    model = cfg.model
    if not is_detector(cfg):
        return model.sem_seg_head.num_classes
    return model.roi_heads.num_classes if "roi_heads" in model else model.num_classes


def _random_instances(size: int, classes: int, with_masks: bool, generator) -> Instances:
    """Two random boxes (between a quarter and half of the image) and their box masks."""
    corners = torch.rand(2, 2, generator=generator) * size / 2
    boxes = torch.cat(
        [corners, corners + size / 4 + torch.rand(2, 2, generator=generator) * size / 4], 1
    )
    instances = Instances((size, size))
    instances.gt_boxes = Boxes(boxes)
    instances.gt_classes = torch.randint(classes, (2,), generator=generator)
    if with_masks:
        instances.gt_masks = PolygonMasks(
            [[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in boxes.tolist()]
        )
    return instances


def detection_variants(variants: Sequence[str], default: bool) -> List[str]:
    """The variants a detection config can run: the exported (ONNX Runtime) variant wraps a
    segmentation graph, so it leaves the default list and is refused when asked for."""
    exported = [v for v in variants if VARIANTS[v].exported]
    if exported and not default:
        raise ValueError(
            f"--variants {' '.join(exported)}: the ONNX Runtime variant benchmarks segmentors "
            "only; export a detector with tools/export_model.py and time it apart"
        )
    return [v for v in variants if not VARIANTS[v].exported]


def training_inputs(cfg, size: int, count: int) -> List[Dict]:
    """``count`` training inputs of random size×size images with random labels: a label map for
    segmentation, boxes (and masks for Mask R-CNN) for detection."""
    generator = torch.Generator().manual_seed(1)
    batch = random_inputs(size, count)
    classes = num_classes(cfg)
    with_masks = "mask_head" in cfg.model.get("roi_heads", {})
    for item in batch:
        if is_detector(cfg):
            item["instances"] = _random_instances(size, classes, with_masks, generator)
        else:
            item["sem_seg"] = torch.randint(classes, (size, size), generator=generator)
    return batch


# ----------------------------------------------------------------------------- timing


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def _numerics(args):
    """Mixed precision (``--amp``) and the attention kernel (``--attention-kernel``)."""
    with contextlib.ExitStack() as stack:
        if args.amp != "none":
            device = torch.device(args.device).type
            stack.enter_context(torch.autocast(device, dtype=AMP_DTYPES[args.amp]))
        if args.attention_kernel == "math":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield


def _inference(model: nn.Module, inputs: List[Dict], args) -> Callable[[], List[Dict]]:
    def run():
        with torch.no_grad(), _numerics(args):
            return model(inputs)

    return run


def timed(run: Callable, device: str) -> float:
    """Wall-clock seconds of one call, device work included."""
    _sync(device)
    start = time.perf_counter()
    run()
    _sync(device)
    return time.perf_counter() - start


def interleaved_times(runs: Dict[str, Callable], repeats: int, warmup: int, device: str):
    """{name: [seconds]} of ``repeats`` timed calls of each run, after ``warmup`` untimed rounds,
    in alternating order (A B C, C B A, ...)."""
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times = {name: [] for name in names}
    for index in range(repeats):
        for name in names if index % 2 == 0 else names[::-1]:
            times[name].append(timed(runs[name], device))
    return times


STAGES = {
    "image encoder": ("backbone.bottom_up.image_encoder",),
    "text encoder": ("backbone.bottom_up.prompts",),
    "context decoder": ("backbone.bottom_up.context_decoder",),
    "bottom-up": ("backbone.bottom_up",),
    "backbone": ("backbone",),
    # segmentation; RetinaNet; R-CNN
    "decode head": ("sem_seg_head", "head", "proposal_generator", "roi_heads"),
}


def _split_stages(inclusive: Dict[str, float], total: float) -> Dict[str, float]:
    """Inclusive seconds of the STAGES modules and of the whole call → exclusive milliseconds."""
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
    for label, names in STAGES.items():
        for name in (n for n in names if n in modules):

            def pre_hook(module, inputs, label=label):
                _sync(device)
                starts[label] = time.perf_counter()

            def post_hook(module, inputs, outputs, label=label):
                _sync(device)
                inclusive[label] = inclusive.get(label, 0.0) + time.perf_counter() - starts[label]

            handles += [
                modules[name].register_forward_pre_hook(pre_hook),
                modules[name].register_forward_hook(post_hook),
            ]
    calls = []
    try:
        for _ in range(repeats):
            inclusive.clear()
            calls.append(_split_stages(inclusive, timed(run, device)))
    finally:
        for handle in handles:
            handle.remove()
    return {label: statistics.median(call[label] for call in calls) for label in calls[0]}


def train_step_times(args, names: Sequence[str]) -> Dict[str, List[float]]:
    """Seconds per training step (forward with losses, backward, optimizer step) of the
    DenseCLIP (``"denseclip"``) and baseline models, interleaved."""
    steps = {}
    for name in names:
        cfg = copy.deepcopy(args.baseline_cfg if name == "baseline" else args.cfg)
        model = _load_model(cfg, None, args.device).train()
        cfg.optimizer.params.model = model
        optimizer = instantiate(cfg.optimizer)
        batch = training_inputs(cfg, args.size, args.train_batch)

        def step(model=model, optimizer=optimizer, batch=batch):
            _forward_backward(model, batch, args)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        steps[name] = step
    return interleaved_times(steps, args.train_repeats, 1, args.device)


def _forward_backward(model: nn.Module, batch: List[Dict], args) -> None:
    """One training forward (losses) and backward; detectors log to an event storage."""
    with EventStorage(), _numerics(args):
        losses = model(batch)
    sum(losses.values()).backward()


# ----------------------------------------------------------------------------- memory


def _proc_status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_mb(run: Callable, device: str) -> float:
    """Peak memory of one call above the memory in use before it, in MiB (see module doc)."""
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
    before = _proc_status_kb("VmRSS")
    run()
    return (_proc_status_kb("VmHWM") - before) / 1024


def model_mb(model: nn.Module) -> float:
    if isinstance(model, ONNXRuntimeSegmentor):
        return model.file_mb
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def measure_memory(args, name: str) -> Dict[str, float]:
    """Run in a fresh process: weights and peak inference memory of one variant (MiB)."""
    model = build_variants(args, [name])[name]
    run = _inference(model, random_inputs(args.size), args)
    run()  # warm-up: caches, allocator pools
    peaks = [peak_memory_mb(run, args.device) for _ in range(3)]
    return {"model_mb": model_mb(model), "peak_mb": statistics.median(peaks)}


def measure_train_memory(args, name: str) -> Dict[str, float]:
    """Run in a fresh process: weights and peak memory of one training forward + backward of
    the DenseCLIP (``"denseclip"``) or baseline model (MiB), after one untimed step."""
    cfg = args.baseline_cfg if name == "baseline" else args.cfg
    model = _load_model(cfg, None, args.device).train()
    batch = training_inputs(cfg, args.size, args.train_batch)
    _forward_backward(model, batch, args)  # warm-up: caches, allocator pools
    model.zero_grad(set_to_none=True)
    peak = peak_memory_mb(lambda: _forward_backward(model, batch, args), args.device)
    return {"model_mb": model_mb(model), "train_peak_mb": peak}


def memory_in_subprocesses(
    args, names: Sequence[str], flag: str = "--memory-of"
) -> Dict[str, Dict[str, float]]:
    """{name: measurement} of ``tools/benchmark.py FLAG NAME ...``, one fresh process each."""
    results = {}
    for name in names:
        script = os.path.abspath(__file__)
        command = [sys.executable, script, flag, name, *args.argv]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"memory measurement of {name} failed:\n{done.stderr[-3000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def print_train_memory(args, memory: Dict[str, Dict[str, float]]) -> Dict:
    """The ``--train-memory`` report: a table, the ratio, a JSON line."""
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


# ----------------------------------------------------------------------------- report


def ratios(latency: Dict[str, float]) -> Dict[str, float]:
    pairs = {
        "cached / baseline": ("denseclip", "baseline"),
        "cached / baseline (official image path)": ("denseclip-unfolded", "baseline-unfolded"),
        "official / ours": ("denseclip-official", "denseclip"),
        "official / cached (text cache alone)": ("denseclip-official", "denseclip-unfolded"),
        "onnxruntime / ours (eager)": ("denseclip-onnxruntime", "denseclip"),
    }
    return {
        label: latency[a] / latency[b]
        for label, (a, b) in pairs.items()
        if a in latency and b in latency
    }


def _prediction(output: Dict) -> torch.Tensor:
    """The logits of a segmentation output; the boxes and scores (N×5) of a detection one."""
    if "sem_seg" in output:
        return output["sem_seg"].float()
    instances = output["instances"]
    return torch.cat([instances.pred_boxes.tensor, instances.scores[:, None]], dim=1).float()


def _max_difference(outputs: Dict[str, List[Dict]], name: str) -> Optional[float]:
    """Largest |Δ| of a variant's logits (detection: boxes and scores) against the official one
    of its family; infinite when the two detect a different number of objects."""
    reference = "baseline-unfolded" if VARIANTS[name].baseline else "denseclip-official"
    if reference not in outputs:
        return None
    ours, theirs = (_prediction(outputs[n][0]) for n in (name, reference))
    if ours.shape != theirs.shape:
        return float("inf")
    return (ours - theirs).abs().max().item() if ours.numel() else 0.0


def print_report(args, times, memory, outputs, train, profile) -> Dict:
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
        diff = _max_difference(outputs, name)
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


def profile_ops(run: Callable, args, name: str) -> None:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        run()
    sort_by = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
    print(f"\ntorch.profiler, {name}:")
    print(prof.key_averages().table(sort_by=sort_by, row_limit=12))


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: Optional[Sequence[str]] = None):
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
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.default_variants = args.variants is None
    if args.variants is None:
        on_cpu = args.device == "cpu"
        args.variants = [name for name, v in VARIANTS.items() if on_cpu or not v.exported]
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    on_gpu = args.device.startswith("cuda")
    if args.amp == "bf16" and on_gpu and not torch.cuda.is_bf16_supported():
        parser.error("--amp bf16: this GPU does not support bfloat16; use --amp fp16")
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="denseclip_benchmark_") as args.export_dir:
        return benchmark(args)


def benchmark(args) -> Dict:
    """Everything :func:`main` reports, for parsed arguments (``args.export_dir``: a folder for
    the ONNX export)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    args.cfg, _ = load_config(args.config_file, args.opts)
    if is_detector(args.cfg):
        args.variants = detection_variants(args.variants, args.default_variants)
    # the models the variants ask for: "denseclip", "baseline" or both
    args.models = [
        m for m in ("denseclip", "baseline") if m in {_model_of(v) for v in args.variants}
    ]
    if "baseline" not in args.models:
        args.baseline_config_file, args.baseline_cfg = None, args.cfg
    else:
        args.baseline_cfg, _ = load_config(args.baseline_config_file, args.opts)
    if is_detector(args.cfg) != is_detector(args.baseline_cfg):
        kinds = {True: "a detector", False: "a semantic segmentation model"}
        raise ValueError(
            f"{args.config_file} is {kinds[is_detector(args.cfg)]} but "
            f"{args.baseline_config_file} is {kinds[is_detector(args.baseline_cfg)]}: compare "
            "models of the same kind"
        )
    args.num_classes = num_classes(args.cfg)
    if args.memory_of:
        print(json.dumps(measure_memory(args, args.memory_of)))
        return {}
    if args.train_memory_of:
        print(json.dumps(measure_train_memory(args, args.train_memory_of)))
        return {}
    if args.train_memory:
        memory = memory_in_subprocesses(args, args.models, flag="--train-memory-of")
        report = print_train_memory(args, memory)
        print(json.dumps(report))
        return report

    models = build_variants(args, args.variants)
    inputs = random_inputs(args.size)
    runs = {name: _inference(model, inputs, args) for name, model in models.items()}
    outputs = {name: run() for name, run in runs.items()}
    times = interleaved_times(runs, args.repeats, args.warmup, args.device)
    profile = {}
    if args.profile:
        for name in [n for n in ("denseclip", "denseclip-official") if n in runs]:
            profile[name] = stage_times(models[name], runs[name], args.device, args.repeats)
            profile_ops(runs[name], args, name)
    del models, runs
    memory = {} if args.no_memory else memory_in_subprocesses(args, args.variants)
    train = train_step_times(args, args.models) if args.train_repeats else {}
    report = print_report(args, times, memory, outputs, train, profile)
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
