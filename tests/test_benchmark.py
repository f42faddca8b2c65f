"""The benchmark's pieces (denseclip.analysis.benchmark) without timing a model: the variants'
bookkeeping, the random inputs, the forward settings, interleaving, the split of time into the
model's parts, the /proc memory reader, the fresh-process runner and the printed report. The
smoke runs of tools/benchmark.py are in test_inference.py, test_export.py and
test_vit_detection.py."""

import argparse
import json
import math
import os
import textwrap

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from detectron2.structures import Boxes, Instances

from helpers import load_python_file

from denseclip.analysis.benchmark import (
    ForwardSettings,
    detection_variants,
    in_fresh_processes,
    interleaved_times,
    model_of,
    num_classes,
    operator_table,
    peak_memory_mb,
    print_report,
    print_train_memory,
    random_inputs,
    ratios,
    stage_times,
    training_inputs,
)
from denseclip.analysis.benchmark.memory import proc_status_kb
from denseclip.analysis.benchmark.profiling import exclusive_ms
from denseclip.analysis.benchmark.report import max_difference
from denseclip.analysis.benchmark.variants import weights_mb

SEGMENTATION = OmegaConf.create({"model": {"sem_seg_head": {"num_classes": 5}}})
MASK_RCNN = OmegaConf.create({"model": {"roi_heads": {"num_classes": 7, "mask_head": {}}}})
RETINANET = OmegaConf.create({"model": {"num_classes": 3}})


# ----------------------------------------------------------------------------- variants, inputs


def test_variants_belong_to_their_model():
    assert model_of("denseclip-official") == model_of("denseclip-onnxruntime") == "denseclip"
    assert model_of("baseline-unfolded") == "baseline"


def test_benchmark_leaves_the_onnxruntime_variant_out_for_detectors():
    variants = ["denseclip", "denseclip-onnxruntime"]
    assert detection_variants(variants, default=True) == ["denseclip"]
    with pytest.raises(ValueError, match="denseclip-onnxruntime: the ONNX Runtime variant"):
        detection_variants(variants, default=False)


def test_weights_mb_counts_parameters_and_buffers():
    model = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16))
    tensors = 16 * 16 + 16 + 2 * 16 + 2 * 16  # linear, affine, running mean and variance
    assert weights_mb(model) == (tensors * 4 + 8) / 2**20  # + num_batches_tracked (int64)


def test_random_inputs_are_the_same_in_every_call():
    first, second = random_inputs(32, 2), random_inputs(32, 2)
    assert [x["image"].shape for x in first] == [(3, 32, 32)] * 2
    assert torch.equal(first[1]["image"], second[1]["image"])
    assert not torch.equal(first[0]["image"], first[1]["image"])
    assert 0 <= first[0]["image"].min() and first[0]["image"].max() <= 255


def test_training_inputs_label_segmentation_and_detection():
    assert [num_classes(c) for c in (SEGMENTATION, MASK_RCNN, RETINANET)] == [5, 7, 3]
    (item,) = training_inputs(SEGMENTATION, 24, 1)
    assert item["sem_seg"].shape == (24, 24) and 0 <= item["sem_seg"].max() < 5
    batch = training_inputs(MASK_RCNN, 64, 2)
    for item in batch:
        instances = item["instances"]
        assert len(instances) == 2 and instances.image_size == (64, 64)
        assert instances.gt_classes.max() < 7 and len(instances.gt_masks) == 2
        assert (instances.gt_boxes.area() > 0).all()
    assert not training_inputs(RETINANET, 64, 1)[0]["instances"].has("gt_masks")


# ----------------------------------------------------------------------------- runs, timing


@pytest.mark.parametrize("kernel, materialised", [("fused", False), ("math", True)])
def test_benchmark_attention_kernel_switch(kernel, materialised):
    """``--attention-kernel math`` runs attention with PyTorch's math kernel, which computes the
    softmax of the whole attention matrix; the fused default does not."""
    tool = load_python_file("tools/benchmark.py")
    args = tool.parse_args(["--attention-kernel", kernel, "--device", "cpu"])
    q = torch.randn(1, 2, 16, 8, requires_grad=True)
    with torch.profiler.profile() as profile, args.settings.scope():
        F.scaled_dot_product_attention(q, q, q).sum().backward()
    ops = {event.key for event in profile.key_averages()}
    assert any("softmax" in op for op in ops) == materialised, sorted(ops)


def test_forward_settings_autocast_only_when_asked():
    x = torch.randn(4, 4)
    with ForwardSettings("cpu", amp="bf16").scope():
        assert (x @ x).dtype == torch.bfloat16
    with ForwardSettings("cpu").scope():
        assert (x @ x).dtype == torch.float32


def test_interleaved_times_alternate_the_order():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in "ABC"}
    times = interleaved_times(runs, repeats=3, warmup=1, device="cpu")
    assert "".join(calls) == "ABC" + "ABC" + "CBA" + "ABC"
    assert {name: len(t) for name, t in times.items()} == {"A": 3, "B": 3, "C": 3}
    assert all(s >= 0 for t in times.values() for s in t)


def test_exclusive_ms_subtracts_the_nested_parts():
    inclusive = {
        "image encoder": 0.010,
        "context decoder": 0.002,
        "bottom-up": 0.016,
        "backbone": 0.020,
        "decode head": 0.005,
    }
    ms = exclusive_ms(inclusive, total=0.030)
    expected = {
        "image encoder": 10,
        "text encoder": 0,
        "context decoder": 2,
        "score maps": 4,
        "FPN": 4,
        "decode head": 5,
        "meta-arch": 5,
        "total": 30,
    }
    assert list(ms) == list(expected)
    assert all(math.isclose(ms[k], v, abs_tol=1e-9) for k, v in expected.items())


def test_stage_times_hooks_the_parts_and_removes_its_hooks():
    bottom_up = nn.ModuleDict({"image_encoder": nn.Linear(4, 4)})
    bottom_up.forward = lambda x: bottom_up["image_encoder"](x)
    backbone = nn.ModuleDict({"bottom_up": bottom_up})
    backbone.forward = lambda x: bottom_up(x)
    model = nn.ModuleDict({"backbone": backbone, "sem_seg_head": nn.Linear(4, 2)})
    run = lambda: model["sem_seg_head"](backbone(torch.ones(1, 4)))  # noqa: E731
    parts = stage_times(model, run, "cpu", repeats=2)
    assert list(parts) == [
        "image encoder",
        "text encoder",
        "context decoder",
        "score maps",
        "FPN",
        "decode head",
        "meta-arch",
        "total",
    ]
    assert parts["text encoder"] == parts["context decoder"] == 0
    assert parts["total"] >= parts["image encoder"] > 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_operator_table_names_the_operators_of_the_call():
    table = operator_table(lambda: torch.ones(8, 8).mm(torch.ones(8, 8)), "cpu")
    assert "aten::mm" in table and "Self CPU" in table


# ----------------------------------------------------------------------------- memory, runner


def test_proc_status_reader(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    assert proc_status_kb("VmRSS", str(status)) == 1024
    assert proc_status_kb("VmHWM", str(status)) == 2048
    with pytest.raises(RuntimeError, match="has no VmSwap"):
        proc_status_kb("VmSwap", str(status))
    assert proc_status_kb("VmRSS") > 0  # this process


def test_peak_memory_counts_what_a_call_allocates_and_frees():
    """A 64 MiB tensor, written and freed inside the call: the peak above the resident size
    before the call is at least most of it."""
    peak = peak_memory_mb(lambda: torch.ones(16 * 2**20).sum(), "cpu")
    assert 48 < peak < 1024


def test_in_fresh_processes_reads_the_last_json_line(tmp_path):
    script = tmp_path / "measure.py"
    script.write_text(textwrap.dedent("""
            import json, os, sys
            flag, name, *rest = sys.argv[1:]
            if name == "broken":
                sys.exit("no measurement for " + name)
            print("a line before")
            print(json.dumps({"name": name, "flag": flag, "rest": rest, "pid": os.getpid()}))
            """))
    results = in_fresh_processes(str(script), "--of", ["a", "b"], ["--size", "8"])
    assert {n: r["rest"] for n, r in results.items()} == {
        "a": ["--size", "8"],
        "b": ["--size", "8"],
    }
    assert results["a"]["flag"] == "--of" and results["a"]["name"] == "a"
    assert len({r["pid"] for r in results.values()} | {os.getpid()}) == 3
    with pytest.raises(
        RuntimeError, match="memory measurement of broken failed:\n.*no measurement"
    ):
        in_fresh_processes(str(script), "--of", ["broken"], [])


# ----------------------------------------------------------------------------- report


def _segmentation(logits):
    return [{"sem_seg": torch.tensor(logits)}]


def _detection(boxes, scores):
    instances = Instances((10, 10))
    instances.pred_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
    instances.scores = torch.tensor(scores)
    return [{"instances": instances}]


def test_ratios_of_the_variants_that_ran():
    latency = {"denseclip": 10.0, "baseline": 8.0, "denseclip-official": 30.0}
    assert ratios(latency) == {"cached / baseline": 1.25, "official / ours": 3.0}


def test_max_difference_against_the_official_variant_of_the_family():
    outputs = {
        "denseclip": _segmentation([1.0, 2.0]),
        "denseclip-official": _segmentation([1.5, 2.0]),
        "baseline": _segmentation([0.0, 0.0]),
    }
    assert max_difference(outputs, "denseclip") == 0.5
    assert max_difference(outputs, "baseline") is None  # baseline-unfolded did not run
    detections = {
        "denseclip": _detection([0.0, 0, 4, 4], [0.5]),
        "denseclip-official": _detection([0.0, 0, 4, 5], [0.25]),
        "baseline": _detection([], []),
        "baseline-unfolded": _detection([], []),
    }
    assert max_difference(detections, "denseclip") == 1.0
    assert max_difference(detections, "baseline") == 0.0
    detections["baseline-unfolded"] = _detection([0.0, 0, 4, 4], [0.5])
    assert max_difference(detections, "baseline") == math.inf


def _args(**changes):
    args = dict(
        config_file="dense.py",
        baseline_config_file="base.py",
        size=64,
        num_classes=3,
        device="cuda",
        amp="none",
        repeats=2,
        warmup=1,
        train_batch=2,
        train_repeats=1,
        attention_kernel="fused",
    )
    return argparse.Namespace(**{**args, **changes})


def test_report_prints_the_table_ratios_training_and_profile(capsys):
    times = {"denseclip": [0.010, 0.012, 0.030], "baseline": [0.008]}
    memory = {"denseclip": {"model_mb": 12.25, "peak_mb": 3.5}}
    outputs = {"denseclip": _segmentation([1.0]), "baseline": _segmentation([1.0])}
    train = {"denseclip": [0.25, 0.5], "baseline": [0.125]}
    profile = {"denseclip": {"image encoder": 7.4, "total": 12.0}}
    report = print_report(_args(amp="bf16"), times, memory, outputs, train, profile)
    nan = float("nan")
    rows = [
        "",
        "dense.py vs base.py",
        "64×64, K=3, cuda, bf16 autocast, median of 2 (after 1 warm-up), variants interleaved",
        "",
        f"{'variant':<22} {'':<40} {'latency ms':>11} {'range':>17} {'weights MB':>11} "
        f"{'peak MB':>8} {'|Δ| vs official':>16}",
        f"{'denseclip':<22} {'cached text, BN folded (ours)':<40} {12.0:>11.1f} {'10–30':>17} "
        f"{12.25:>11.1f} {3.5:>8.1f} {'':>16}",
        f"{'baseline':<22} {'CLIP + Semantic FPN, BN folded':<40} {8.0:>11.1f} {'8–8':>17} "
        f"{nan:>11.1f} {nan:>8.1f} {'':>16}",
        "",
        f"  {'cached / baseline':<42}  1.500",
        "",
        "training step (batch 2, median of 1):",
        f"  {'denseclip':<42}    375.0 ms",
        f"  {'baseline':<42}    125.0 ms",
        f"  {'denseclip / baseline':<42}  3.000",
        "",
        "where the time goes, denseclip (ms, median of 2): image encoder 7, total 12",
    ]
    assert capsys.readouterr().out.splitlines() == rows
    assert report["latency_ms"] == {"denseclip": 12.0, "baseline": 8.0}
    assert report["ratios"] == {"cached / baseline": 1.5}
    assert report["train_step_ms"] == {"denseclip": 375.0, "baseline": 125.0}
    assert report["memory_mb"] is memory and report["profile_ms"] is profile
    json.dumps(report)


def test_report_of_one_config_names_the_cpu_threads(capsys):
    times = {"denseclip": [0.010]}
    print_report(_args(device="cpu", baseline_config_file=None), times, {}, {}, {}, {})
    lines = capsys.readouterr().out.splitlines()
    threads = torch.get_num_threads()
    assert lines[1:3] == [
        "dense.py",
        f"64×64, K=3, cpu, threads: {threads}, fp32, median of 2 (after 1 warm-up), variants "
        "interleaved",
    ]
    assert len(lines) == 6  # no ratios, no training step, no profile


def test_train_memory_report(capsys):
    memory = {
        "denseclip": {"model_mb": 10.0, "train_peak_mb": 300.0},
        "baseline": {"model_mb": 8.0, "train_peak_mb": 200.0},
    }
    report = print_train_memory(_args(attention_kernel="math"), memory)
    assert capsys.readouterr().out.splitlines() == [
        "",
        "peak memory of one training forward + backward, 2 image(s) of 64×64, cuda, math "
        "attention kernel, fresh process each (MiB)",
        "",
        "model       weights MB   peak MB  config",
        "denseclip         10.0     300.0  dense.py",
        "baseline           8.0     200.0  base.py",
        f"  {'denseclip / baseline':<42}  1.500",
    ]
    assert report == {"train_memory_mb": memory, "ratio": 1.5}
