"""End-to-end tests of ``train_net.py`` (and ``tools/run_demo.py``), run as subprocesses.

Every run uses the tiny synthetic config with overrides that keep it to a few iterations at
batch 2, so that the whole file takes a couple of minutes on 2 CPU cores. Runs share outputs
through module-scoped fixtures: one training run feeds the artifact, eval-only and resume tests.
"""

import glob
import math
import os
import re
import shutil

import cv2
import numpy as np
import pytest
import torch

from denseclip.data import SYNTHETIC_CLASSES

from helpers import (
    assert_same_results,
    evaluate_in_process,
    NO_CLIP_WEIGHTS_PATTERN,
    TINY_CONFIG,
    config_fields,
    eval_results,
    free_port,
    load_python_file,
    read_json,
    read_metrics,
    run_python,
    run_train_net,
    tiny_overrides,
    write_three_class_dataset,
)

pytestmark = pytest.mark.timeout(900)

TRAIN_ITERS = 4  # first run: iterations 0..3, checkpoints after iterations 1 and 3
RESUME_ITERS = 6  # the resumed run continues with iterations 4 and 5


def _tiny_schedule():
    """(base lr, PolyLRWithWarmup arguments) of the tiny config, read from the config."""
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(os.path.join(os.path.dirname(__file__), "..", TINY_CONFIG))
    sched = cfg.lr_multiplier
    return cfg.optimizer.lr, dict(
        power=sched.power,
        min_lr=sched.min_lr,
        warmup_iters=sched.warmup_iters,
        warmup_ratio=sched.warmup_ratio,
    )


def poly_with_warmup_lr(it, base_lr, max_iter, power, min_lr, warmup_iters, warmup_ratio):
    """mmcv's poly policy with linear warm-up, written out independently of the code under test."""
    it = min(it, max_iter)
    lr = (base_lr - min_lr) * (1 - it / max_iter) ** power + min_lr
    if it < warmup_iters:
        lr *= 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)
    return lr


def _training_records(metrics):
    """metrics.json records written by the training loop (they hold the loss and the lr)."""
    return [r for r in metrics if "total_loss" in r and "lr" in r]


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run on the built-in synthetic dataset (generated on first use)."""
    datasets = tmp_path_factory.mktemp("train_datasets")
    out = str(tmp_path_factory.mktemp("train") / "out")
    run = run_train_net(
        ["--config-file", TINY_CONFIG, *tiny_overrides(out, max_iter=TRAIN_ITERS)], datasets
    )
    assert run.returncode == 0, run.describe()
    return dict(run=run, out=out, datasets=str(datasets))


def _resume(out, max_iter, datasets):
    """``train_net.py --resume`` of the run in ``out`` up to ``max_iter``: {run, out, records}
    with the training records the resumed run added to metrics.json."""
    records_before = len(read_metrics(os.path.join(out, "metrics.json")))
    run = run_train_net(
        ["--config-file", TINY_CONFIG, "--resume", *tiny_overrides(out, max_iter=max_iter)],
        datasets,
    )
    assert run.returncode == 0, run.describe()
    new_records = read_metrics(os.path.join(out, "metrics.json"))[records_before:]
    return dict(run=run, out=out, records=_training_records(new_records))


@pytest.fixture(scope="module")
def resumed(trained, tmp_path_factory):
    """A copy of the trained run, continued with ``--resume train.max_iter=6``."""
    out = str(tmp_path_factory.mktemp("resume") / "out")
    shutil.copytree(trained["out"], out)
    return _resume(out, RESUME_ITERS, trained["datasets"])


@pytest.fixture(scope="module")
def resumed_after_interruption(trained, tmp_path_factory):
    """The trained run cut back to its first checkpoint (after iteration 1), as if it had been
    interrupted there, then resumed with the same ``train.max_iter``."""
    out = str(tmp_path_factory.mktemp("interrupted") / "out")
    shutil.copytree(trained["out"], out)
    first = sorted(glob.glob(os.path.join(out, "model_0*.pth")))[0]
    assert os.path.basename(first) == "model_0000001.pth", sorted(os.listdir(out))
    for name in os.listdir(out):
        if name.endswith(".pth") and os.path.join(out, name) != first:
            os.remove(os.path.join(out, name))
    with open(os.path.join(out, "last_checkpoint"), "w") as f:
        f.write(os.path.basename(first))
    return _resume(out, TRAIN_ITERS, trained["datasets"])


# ---------------------------------------------------------------------------------- training


def test_training_writes_checkpoint_metrics_events_and_eval_results(trained):
    out, run = trained["out"], trained["run"]
    files = sorted(os.listdir(out))
    assert os.path.isfile(os.path.join(out, "model_final.pth")), f"{files}{run.describe()}"
    assert glob.glob(os.path.join(out, "model_0*.pth")), f"no periodic checkpoint: {files}"
    events = glob.glob(os.path.join(out, "events.out.tfevents.*"))
    assert events and os.path.getsize(events[0]) > 0, f"no TensorBoard events: {files}"

    records = _training_records(read_metrics(os.path.join(out, "metrics.json")))
    assert [r["iteration"] for r in records] == list(range(TRAIN_ITERS)), records
    assert all(math.isfinite(r["total_loss"]) for r in records), records

    results = eval_results(out)
    assert results is not None, f"no eval_results.json in {files}{run.describe()}"
    miou = results["sem_seg"]["mIoU"]
    assert isinstance(miou, float) and 0.0 <= miou <= 100.0, results


def test_training_generates_builtin_dataset_under_denseclip_datasets(trained):
    root = os.path.join(trained["datasets"], "synthetic_seg")
    assert os.path.isfile(os.path.join(root, "COMPLETE.json")), trained["run"].describe()
    assert os.path.isfile(os.path.join(root, "classes.txt"))


def test_training_without_clip_weights_warns_exactly_once(trained):
    run = trained["run"]
    found = re.findall(NO_CLIP_WEIGHTS_PATTERN, run.output)
    assert len(found) == 1, f"warning printed {len(found)} times{run.describe()}"
    with open(os.path.join(trained["out"], "log.txt")) as f:
        assert len(re.findall(NO_CLIP_WEIGHTS_PATTERN, f.read())) == 1


def test_cpu_training_keeps_freed_host_memory(trained):
    with open(os.path.join(trained["out"], "log.txt")) as f:
        assert "Training on the CPU: freed host memory is kept for reuse" in f.read()


# ---------------------------------------------------------------------------------- eval-only


def test_eval_only_evaluates_checkpoint_and_writes_results(trained, tmp_path):
    out = str(tmp_path / "eval")
    checkpoint = os.path.join(trained["out"], "model_final.pth")
    run = run_train_net(
        [
            "--config-file",
            TINY_CONFIG,
            "--eval-only",
            f"train.init_checkpoint={checkpoint}",
            f"train.output_dir={out}",
        ],
        trained["datasets"],
    )
    assert run.returncode == 0, run.describe()
    assert "Starting training" not in run.output, run.describe()
    assert re.search(r"copypaste: mIoU", run.output), run.describe()
    results = eval_results(out)
    assert results is not None, f"no eval_results.json in {out}{run.describe()}"
    # The training run evaluated the same weights (model_final) right after its last iteration.
    expected = eval_results(trained["out"])["sem_seg"]["mIoU"]
    assert results["sem_seg"]["mIoU"] == pytest.approx(expected, abs=1e-3)


def test_eval_only_with_aug_test_evaluates_multi_scale_and_flip(trained, tmp_path):
    out = str(tmp_path / "eval_tta")
    checkpoint = os.path.join(trained["out"], "model_final.pth")
    args = ["--eval-only", "--aug-test", "tta.scales=[0.5,1.0]", "tta.base_size=[256,64]"]
    run = run_train_net(
        [
            "--config-file",
            TINY_CONFIG,
            *args,
            f"train.init_checkpoint={checkpoint}",
            f"train.output_dir={out}",
        ],
        trained["datasets"],
    )
    assert run.returncode == 0, run.describe()
    assert "Multi-scale test: scales (0.5, 1.0) of (256, 64), flip True" in run.output, run.tail()
    assert 0 <= eval_results(out)["sem_seg"]["mIoU"] <= 100, run.describe()
    # the multi-scale + flip evaluation of the same weights, in process
    tta = dict(scales=(0.5, 1.0), base_size=(256, 64), flip=True)
    expected = evaluate_in_process(TINY_CONFIG, [], checkpoint, tta=tta)
    assert_same_results(eval_results(out)["sem_seg"], expected["sem_seg"])


def test_eval_only_without_init_checkpoint_fails_with_clear_message(trained, tmp_path):
    run = run_train_net(
        ["--config-file", TINY_CONFIG, "--eval-only", f"train.output_dir={tmp_path / 'eval'}"],
        trained["datasets"],
    )
    assert run.returncode != 0, run.describe()
    assert (
        "--eval-only needs" in run.output and "train.init_checkpoint" in run.output
    ), run.describe()
    assert "Start inference" not in run.output, run.describe()


# ---------------------------------------------------------------------------------- resume


def test_resume_starts_after_the_last_checkpoint(resumed):
    run, records = resumed["run"], resumed["records"]
    assert f"Starting training from iteration {TRAIN_ITERS}" in run.output, run.describe()
    assert records, run.describe()
    assert records[0]["iteration"] > TRAIN_ITERS - 1, records
    assert [r["iteration"] for r in records] == list(range(TRAIN_ITERS, RESUME_ITERS)), records
    final = torch.load(
        os.path.join(resumed["out"], "model_final.pth"), map_location="cpu", weights_only=False
    )
    assert final["iteration"] == RESUME_ITERS - 1


def test_resume_restores_the_lr_scheduler_state(resumed):
    base_lr, schedule = _tiny_schedule()
    warmup_start = base_lr * schedule["warmup_ratio"]
    lr = resumed["records"][0]["lr"]
    assert lr > 10 * warmup_start, (
        f"lr {lr} at iteration {TRAIN_ITERS}: the schedule restarted at its warm-up value "
        f"{warmup_start}"
    )
    final = torch.load(
        os.path.join(resumed["out"], "model_final.pth"), map_location="cpu", weights_only=False
    )
    # 4 steps in the first run + 2 in the resumed one
    assert final["trainer"]["hooks"]["LRScheduler"]["last_epoch"] == RESUME_ITERS


def test_resume_with_same_max_iter_continues_the_lr_schedule_exactly(
    trained, resumed_after_interruption
):
    run, records = resumed_after_interruption["run"], resumed_after_interruption["records"]
    assert "Starting training from iteration 2" in run.output, run.describe()
    original = {
        r["iteration"]: r["lr"]
        for r in _training_records(read_metrics(os.path.join(trained["out"], "metrics.json")))
    }
    assert [r["iteration"] for r in records] == [2, 3], records
    for r in records:
        assert r["lr"] == pytest.approx(original[r["iteration"]], rel=1e-6), (records, original)


def test_resume_with_longer_max_iter_follows_the_new_schedule(resumed):
    base_lr, schedule = _tiny_schedule()
    for r in resumed["records"]:
        expected = poly_with_warmup_lr(r["iteration"], base_lr, RESUME_ITERS, **schedule)
        assert r["lr"] == pytest.approx(expected, rel=1e-4), resumed["records"]


# ---------------------------------------------------------------------------------- CPU DDP


def test_two_process_cpu_ddp_trains_and_evaluates(tmp_path):
    out = str(tmp_path / "out")
    for attempt in range(2):  # the free port may be taken between probing and binding
        run = run_train_net(
            [
                "--config-file",
                TINY_CONFIG,
                "--num-gpus",
                "2",
                "--dist-url",
                f"tcp://127.0.0.1:{free_port()}",
                *tiny_overrides(out, max_iter=2),
            ],
            tmp_path / "datasets",
        )
        if run.returncode == 0 or "address already in use" not in run.output.lower():
            break
    assert run.returncode == 0, run.describe()
    assert "Rank of current process: 0. World size: 2" in run.output, run.describe()
    with open(os.path.join(out, "log.txt.rank1")) as f:
        assert "Rank of current process: 1. World size: 2" in f.read()
    # total_batch_size=2 over 2 processes: one image per process
    assert "Making batched data loader with batch_size=1" in run.output, run.describe()
    assert os.path.isfile(os.path.join(out, "model_final.pth")), sorted(os.listdir(out))
    assert eval_results(out) is not None, sorted(os.listdir(out))
    # both processes wanted the built-in dataset on first use: one complete copy results
    assert os.path.isfile(tmp_path / "datasets" / "synthetic_seg" / "COMPLETE.json")


# ---------------------------------------------------------------------------------- --dataset


THREE_CLASSES = ("water", "sand", "rock")


@pytest.fixture(scope="module")
def folder_dataset_run(tmp_path_factory):
    root = write_three_class_dataset(str(tmp_path_factory.mktemp("ponds")), THREE_CLASSES)
    out = str(tmp_path_factory.mktemp("ponds_run") / "out")
    run = run_train_net(
        [
            "--config-file",
            TINY_CONFIG,
            "--dataset",
            f"ponds={root}",
            "dataloader.train.dataset.names=ponds_train",
            "dataloader.test.dataset.names=ponds_val",
            *tiny_overrides(out, max_iter=2),
        ],
        tmp_path_factory.mktemp("ponds_datasets"),
    )
    return dict(run=run, out=out)


def test_dataset_folder_sets_the_models_classes(folder_dataset_run):
    run, out = folder_dataset_run["run"], folder_dataset_run["out"]
    assert run.returncode == 0, run.describe()
    results = eval_results(out)
    assert results is not None, run.describe()
    iou_keys = {k for k in results["sem_seg"] if k.startswith("IoU-")}
    assert iou_keys == {f"IoU-{name}" for name in THREE_CLASSES}, results


def test_dataset_folder_classes_are_in_the_saved_model_config(folder_dataset_run):
    import yaml

    run, out = folder_dataset_run["run"], folder_dataset_run["out"]
    assert run.returncode == 0, run.describe()
    with open(os.path.join(out, "config.yaml")) as f:
        model = yaml.safe_load(f)["model"]
    class_names = list(config_fields(model, "class_names"))
    num_classes = list(config_fields(model, "num_classes"))
    assert class_names and all(list(v) == list(THREE_CLASSES) for v in class_names), class_names
    assert num_classes and all(v == 3 for v in num_classes), num_classes
    state = torch.load(os.path.join(out, "model_final.pth"), map_location="cpu", weights_only=False)
    assert state["model"]["sem_seg_head.predictor.weight"].shape[0] == 3


@pytest.mark.parametrize(
    "spec, message",
    [
        ("missing={missing}", "expected a folder at {missing}"),
        ("no-equals-sign", "expected NAME=ROOT"),
    ],
    ids=["missing-folder", "malformed"],
)
def test_bad_dataset_argument_fails_fast_with_clear_error(tmp_path, spec, message):
    missing = str(tmp_path / "no_such_dataset")
    out = tmp_path / "out"
    run = run_train_net(
        [
            "--config-file",
            TINY_CONFIG,
            "--dataset",
            spec.format(missing=missing),
            f"train.output_dir={out}",
        ],
        tmp_path / "datasets",
    )
    assert run.returncode != 0, run.describe()
    assert message.format(missing=missing) in run.output, run.describe()
    # fails before any set-up work: no output folder, no model
    assert not out.exists() and "Model:" not in run.output, run.describe()


# ---------------------------------------------------------------------------------- demo


def test_demo_script_prints_per_class_ious_beside_chance_and_draws_score_maps(tmp_path):
    """tools/run_demo.py end to end, on the small built-in dataset for 3 iterations at batch 2."""
    out = str(tmp_path / "demo")
    small = [
        "dataloader.train.dataset.names=synthetic_seg_train",
        "dataloader.test.dataset.names=synthetic_seg_val",
        "dataloader.train.total_batch_size=2",
    ]
    run = run_python(
        ["tools/run_demo.py", "--output-dir", out, "--max-iter", "3", "--examples", "2"]
        + ["--prompt", "red square", "--opts", *small],
        tmp_path / "datasets",
    )
    assert run.returncode == 0, run.describe()
    results = read_json(os.path.join(out, "eval_results.json"))["sem_seg"]
    for name in SYNTHETIC_CLASSES + ("mIoU",):
        key = "mIoU" if name == "mIoU" else f"IoU-{name}"
        match = re.search(rf"^\s+{name}\s+([0-9.]+)\s+([0-9.]+)$", run.output, re.MULTILINE)
        assert match, (name, run.describe())
        assert float(match.group(1)) == pytest.approx(results[key], abs=0.051)
    picture = cv2.imread(os.path.join(out, "predictions.png"))
    assert picture is not None, sorted(os.listdir(out))
    # 2 rows of image | ground truth | prediction | 5 class maps | "red square", 150 px panels
    assert picture.shape[1] >= 9 * 150 and 2 * 150 <= picture.shape[0] < 3 * 150, picture.shape


def test_demo_iou_table_puts_each_class_beside_the_majority_class_chance_level():
    run_demo = load_python_file("tools/run_demo.py")
    counts = np.array([60, 30, 10, 0])  # the last class never occurs
    results = {"IoU-a": 90.0, "IoU-b": 80.0, "IoU-c": 70.04, "IoU-dd": 0.0, "mIoU": 80.0}
    table = run_demo.iou_table(results, ["a", "b", "c", "dd"], counts).splitlines()
    assert table == [
        "  class    IoU  chance",
        "  a       90.0    60.0",  # always predicting a: IoU = its pixel share
        "  b       80.0     0.0",
        "  c       70.0     0.0",
        "  dd       0.0     0.0",
        "  mIoU    80.0    20.0",  # over the 3 classes present, like SemSegEvaluator
    ]
