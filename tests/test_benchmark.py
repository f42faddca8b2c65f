"""The benchmark's pieces (denseclip.analysis.benchmark) without timing a model: the variants'
bookkeeping, the random inputs, the forward settings, interleaving, the split of time into the
model's parts, the /proc memory reader, the fresh-process runner and the printed report; the
training-step profile on a toy model of known costs and on the tiny configs, the simulated
ranks and ``--train-profile``. The other smoke runs of tools/benchmark.py are in
test_inference.py, test_export.py and test_vit_detection.py."""

import argparse
import json
import math
import os
import textwrap
import time

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from detectron2.structures import Boxes, Instances

from helpers import REPO_ROOT, load_python_file

from denseclip.analysis.benchmark import (
    STAGES,
    ForwardSettings,
    TrainingStep,
    detection_variants,
    in_fresh_processes,
    interleaved_times,
    model_of,
    num_classes,
    operator_table,
    peak_memory_mb,
    print_report,
    print_train_memory,
    print_train_profile,
    random_inputs,
    ratios,
    simulated_ranks_name,
    stage_times,
    train_stage_times,
    training_inputs,
    training_steps,
)
from denseclip.analysis.benchmark.memory import proc_status_kb
from denseclip.analysis.benchmark.profiling import exclusive_ms
from denseclip.analysis.benchmark.report import max_difference
from denseclip.analysis.benchmark.train_profiling import profiled_step, stage_modules, unhooked_step
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
        simulate_ranks=1,
        keep_host_memory=True,
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
        f"64×64, K=3, cpu, threads: {threads}, freed host memory kept, fp32, median of 2 "
        "(after 1 warm-up), variants interleaved",
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


def test_report_of_a_simulated_ranks_step_gives_its_ratio_and_what_it_simulates(capsys):
    train = {"denseclip": [0.375], "baseline": [0.25], "denseclip at 2 ranks": [0.3125]}
    report = print_report(_args(simulate_ranks=2), {}, {}, {}, train, {})
    assert capsys.readouterr().out.splitlines()[-4:] == [
        f"  {'denseclip at 2 ranks':<42}    312.5 ms",
        f"  {'denseclip / baseline':<42}  1.500",
        f"  {'denseclip at 2 ranks / baseline':<42}  1.250",
        "  (denseclip at 2 ranks: one rank's step with the text side shared, simulated in one "
        "process: the text encoder encodes 2 of the 3 classes, no communication)",
    ]
    assert report["train_step_ratios"] == {
        "denseclip / baseline": 1.5,
        "denseclip at 2 ranks / baseline": 1.25,
    }


def _profile(scale: float):
    """A training-step profile whose every stage takes ``scale`` ms forward, 2·scale backward."""
    forward = {stage: scale for stage in STAGES}
    backward = {stage: 2 * scale for stage in STAGES}
    return {
        "forward": {**forward, "total": 6 * scale},
        "backward": {**backward, "total": 12 * scale},
        "optimizer step": scale,
        "unhooked": {"forward": 5 * scale, "backward": 10 * scale, "optimizer step": scale},
    }


def test_train_profile_report(capsys):
    profiles = {"denseclip": _profile(2.0), "baseline": _profile(1.0)}
    report = print_train_profile(_args(device="cuda", amp="fp16", train_repeats=3), profiles)
    cells = lambda *values: "".join(f"{v:>10}" for v in values)  # noqa: E731
    assert capsys.readouterr().out.splitlines() == [
        "",
        "where the time of one training step goes (ms): batch 2, 64×64, K=3, cuda, fp16 "
        "autocast, median of 3 (after 1 warm-up), steps interleaved",
        "",
        f"{'':<24}{'denseclip':>30}{'baseline':>30}",
        f"{'stage':<24}" + cells("forward", "backward", "total") * 2,
        *(f"{s:<24}" + cells("2.0", "4.0", "6.0") + cells("1.0", "2.0", "3.0") for s in STAGES),
        f"{'optimizer step':<24}" + cells("", "", "2.0") + cells("", "", "1.0"),
        f"{'step':<24}" + cells("12.0", "24.0", "38.0") + cells("6.0", "12.0", "19.0"),
        f"{'step without hooks':<24}"
        + cells("10.0", "20.0", "32.0")
        + cells("5.0", "10.0", "16.0"),
        f"  {'denseclip / baseline (steps without hooks)':<50}  2.000",
    ]
    assert report == {
        "train_profile_ms": profiles,
        "train_step_ratios": {"denseclip / baseline": 2.0},
    }
    json.dumps(report)


# ----------------------------------------------------------------------------- training profile


class _SlowBackward(torch.autograd.Function):
    """The identity, whose backward sleeps ``seconds``: a known backward cost."""

    @staticmethod
    def forward(ctx, x, seconds):
        ctx.seconds = seconds
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        time.sleep(ctx.seconds)
        return grad, None


class _Slow(nn.Module):
    """A linear layer that sleeps ``forward_ms`` in its forward and ``backward_ms`` in its
    backward."""

    def __init__(self, forward_ms: float, backward_ms: float):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.forward_s, self.backward_s = forward_ms / 1000, backward_ms / 1000

    def forward(self, x):
        time.sleep(self.forward_s)
        return _SlowBackward.apply(self.linear(x), self.backward_s)


class _ToyBottomUp(nn.Module):
    def __init__(self):
        super().__init__()
        self.image_encoder = _Slow(40, 90)

    def forward(self, x):
        return self.image_encoder(x) * 2  # the bottom-up's own work: the rest


class _ToyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bottom_up = _ToyBottomUp()
        self.fpn = _Slow(20, 50)  # the rest of the backbone: FPN + head

    def forward(self, x):
        return self.fpn(self.bottom_up(x))


class _ToySegmentor(nn.Module):
    """The stage modules of a segmentor at their paths, with known costs (ms): image encoder
    forward 40 and backward 90, FPN + head 30 and 70 (FPN 20 and 50, head 10 and 20)."""

    def __init__(self):
        super().__init__()
        self.backbone = _ToyBackbone()
        self.sem_seg_head = _Slow(10, 20)

    def forward(self, batch):
        images = torch.stack([item["image"] for item in batch])
        return {"loss": self.sem_seg_head(self.backbone(images)).square().mean()}


def test_train_profile_charges_each_stage_its_own_forward_and_backward_time():
    model = _ToySegmentor()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = TrainingStep(model, optimizer, [{"image": torch.randn(4)}], ForwardSettings("cpu"))
    (profile,) = train_stage_times({"toy": step}, repeats=2).values()
    costs = {
        "forward": {"image encoder": 40, "FPN + head": 30},
        "backward": {"image encoder": 90, "FPN + head": 70},
    }
    for part, cost in costs.items():
        ms = profile[part]
        assert math.isclose(sum(ms[stage] for stage in STAGES), ms["total"], rel_tol=1e-9)
        for stage in STAGES:  # sleeps are lower bounds; a busy machine adds a little
            assert cost.get(stage, 0) <= ms[stage] < cost.get(stage, 0) + 25, (part, stage, ms)
    assert profile["unhooked"]["forward"] >= 70 and profile["unhooked"]["backward"] >= 160
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.fixture
def tiny_training_configs(load_tiny_config):
    return {
        "denseclip": load_tiny_config("denseclip_fpn_tiny"),
        "baseline": load_tiny_config("fpn_clip_tiny"),
    }


@pytest.mark.usefixtures("single_torch_thread")
def test_train_profile_of_the_tiny_configs_adds_up_to_the_unhooked_step(tiny_training_configs):
    steps = training_steps(
        tiny_training_configs, ["denseclip", "baseline"], 128, 1, ForwardSettings("cpu")
    )
    stages = {name: {s for s, _ in stage_modules(step.model)} for name, step in steps.items()}
    assert stages == {
        "denseclip": set(STAGES),
        "baseline": {"image encoder", "score maps + aux loss", "FPN + head"},
    }
    profiles = train_stage_times(steps, repeats=1)
    for name, profile in profiles.items():
        for part in ("forward", "backward"):
            ms = profile[part]
            assert math.isclose(sum(ms[stage] for stage in STAGES), ms["total"], rel_tol=1e-9)
            for stage in STAGES:
                assert (ms[stage] > 0) == (name == "denseclip" or stage in stages[name]), (
                    name,
                    part,
                    stage,
                )
    # the hooks cost little: a hooked backward (its stages add up to its total, above) takes at
    # most 10 % more than the same backward unhooked (the fastest of several each, robust to a
    # busy machine; a hooked run can only come out faster by noise)
    hooked, unhooked = [], []
    for _ in range(5):
        hooked.append(profiled_step(steps["denseclip"])["backward"]["total"])
        unhooked.append(unhooked_step(steps["denseclip"])["backward"])
    assert min(hooked) <= 1.1 * min(unhooked), (hooked, unhooked)


@pytest.mark.usefixtures("single_torch_thread")
def test_simulated_ranks_encode_one_ranks_share_of_the_classes(tiny_training_configs):
    configs = {"denseclip": tiny_training_configs["denseclip"]}
    steps = training_steps(configs, ["denseclip"], 64, 1, ForwardSettings("cpu"), simulate_ranks=2)
    assert (
        list(steps)
        == ["denseclip", simulated_ranks_name(2)]
        == ["denseclip", "denseclip at 2 ranks"]
    )
    for name, encoded in (("denseclip", 5), ("denseclip at 2 ranks", 3)):  # K=5, ⌈5/2⌉
        model = steps[name].model
        calls = []
        model.backbone.bottom_up.prompts.register_forward_hook(
            lambda m, i, out: calls.append(out.shape)
        )
        (text_encoder,) = [m for m in model.modules() if type(m).__name__ == "CLIPTextEncoder"]
        text_encoder.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
        contexts = [p for n, p in model.named_parameters() if n.endswith("contexts")][0]
        before = contexts.detach().clone()
        steps[name]()
        assert calls == [encoded, (1, 5, 64)]  # K embeddings from ⌈K/R⌉ encoded
        assert not torch.equal(contexts, before)  # the contexts train


def test_simulated_ranks_refuse_a_model_without_a_shared_text_side(load_tiny_config):
    configs = {"denseclip": load_tiny_config("denseclip_fpn_pre_model_tiny")}
    with pytest.raises(ValueError, match="--simulate-ranks: the model has no class text side"):
        training_steps(configs, ["denseclip"], 64, 1, ForwardSettings("cpu"), simulate_ranks=2)


@pytest.mark.parametrize(
    "argv, kept",
    [(["--device", "cpu"], True), (["--device", "cpu", "--release-host-memory"], False)],
)
def test_cpu_timings_keep_freed_host_memory_unless_asked_not_to(argv, kept, capsys):
    args = load_python_file("tools/benchmark.py").parse_args(argv)
    assert args.keep_host_memory is kept
    report_args = _args(device="cpu", keep_host_memory=args.keep_host_memory)
    print_report(report_args, {"denseclip": [0.01]}, {}, {}, {}, {})
    assert f"freed host memory {'kept' if kept else 'released'}" in capsys.readouterr().out


def test_benchmark_refuses_steps_it_cannot_time(capsys):
    tool = load_python_file("tools/benchmark.py")
    for argv, message in (
        (["--simulate-ranks", "0"], "--simulate-ranks must be at least 1, got 0"),
        (["--train-profile", "--train-repeats", "0"], "--train-profile times --train-repeats"),
    ):
        with pytest.raises(SystemExit):
            tool.parse_args(argv + ["--device", "cpu"])
        assert message in capsys.readouterr().err


@pytest.mark.usefixtures("single_torch_thread")
def test_benchmark_train_profile_of_the_tiny_configs(capsys, host_memory_calls):
    tool = load_python_file("tools/benchmark.py")
    calls = len(host_memory_calls)
    report = tool.main(
        [
            "--config-file",
            os.path.join(REPO_ROOT, "configs/Synthetic/denseclip_fpn_tiny.py"),
            "--baseline-config-file",
            os.path.join(REPO_ROOT, "configs/Synthetic/fpn_clip_tiny.py"),
            *("--size", "64", "--train-batch", "1", "--train-repeats", "1"),
            *("--train-profile", "--simulate-ranks", "2", "--device", "cpu"),
        ]
    )
    assert len(host_memory_calls) == calls + 1  # CPU timings keep freed host memory
    assert list(report["train_profile_ms"]) == ["denseclip", "baseline", "denseclip at 2 ranks"]
    assert list(report["train_step_ratios"]) == [
        "denseclip / baseline",
        "denseclip at 2 ranks / baseline",
    ]
    out = capsys.readouterr().out.splitlines()
    title = "where the time of one training step goes (ms): batch 1, 64×64, K=5, cpu"
    assert [line for line in out if line.startswith(title)] == [out[-17]]
    assert json.loads(out[-1]) == json.loads(json.dumps(report))
