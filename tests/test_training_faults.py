"""Training faults: non-finite losses and weights, runs killed while a checkpoint is written, a
full disk, and what is checked before anything is built (datasets, the checkpoint to load, CUDA
for AMP). Trainers run in-process on a one-parameter model; one checkpoint write is killed for
real in a subprocess."""

import argparse
import errno
import glob
import io
import itertools
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from detectron2.data import MetadataCatalog
from detectron2.engine import hooks
from helpers import REPO_ROOT, TINY_CONFIG, write_three_class_dataset

from denseclip.checkpoint import CheckpointReadError, DenseCLIPCheckpointer, NonFiniteWeightsError
from denseclip.data import register_folder_dataset
from denseclip.data.availability import DatasetUnavailableError, check_datasets_available
from denseclip.engine.train import NonFiniteLossError, _build_trainer, check_run, setup


@pytest.fixture
def cuda(monkeypatch):
    """``cuda(available)``: what torch.cuda.is_available() answers during the test."""
    return lambda available: monkeypatch.setattr(torch.cuda, "is_available", lambda: available)


# ----------------------------------------------------------------------------- training loop


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward, infinite gradient: a finite loss whose step ruins the weights."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class _Toy(nn.Module):
    """One weight vector; the data loader yields the iteration, and ``plan`` says what goes
    wrong at which iteration: "nan loss" (loss_b is NaN) or "inf grad"."""

    def __init__(self, plan):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.plan = plan

    def forward(self, iteration):
        w = _InfiniteGradient.apply(self.w) if self.plan.get(iteration) == "inf grad" else self.w
        loss_b = (w - 3).abs().sum()
        if self.plan.get(iteration) == "nan loss":
            loss_b = loss_b * float("nan")
        return {"loss_a": (w**2).sum(), "loss_b": loss_b}


def _train(folder, model, max_iter=4):
    """Trains ``model`` with SGD (lr 0.1) for ``max_iter`` iterations, a checkpoint after each;
    returns it (the exception, if any, propagates)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = OmegaConf.create({"train": {"amp": {"enabled": False}, "device": "cpu"}})
    trainer = _build_trainer(cfg, model, itertools.count(), optimizer)
    checkpointer = DenseCLIPCheckpointer(model, str(folder), trainer=trainer)
    trainer.register_hooks([hooks.PeriodicCheckpointer(checkpointer, period=1, max_iter=max_iter)])
    trainer.train(0, max_iter)
    return model


def _checkpoints(folder):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "*.pth")))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]["w"]


def _tag(folder):
    with open(os.path.join(folder, "last_checkpoint")) as f:
        return f.read()


def test_nan_loss_stops_training_naming_the_iteration_and_the_loss(tmp_path):
    with pytest.raises(NonFiniteLossError) as error:
        _train(tmp_path, _Toy({2: "nan loss"}))
    message = str(error.value)
    assert "iteration 2: non-finite losses loss_b=nan." in message and "loss_a" not in message
    assert _checkpoints(tmp_path) == ["model_0000000.pth", "model_0000001.pth"]


def test_nan_loss_is_caught_before_the_optimizer_step(tmp_path):
    model = _Toy({2: "nan loss"})
    with pytest.raises(NonFiniteLossError):
        _train(tmp_path, model)
    # a step with the NaN gradients would have made the weights NaN
    assert torch.equal(model.w.detach(), _weights(tmp_path / "model_0000001.pth"))
    assert torch.isfinite(model.w).all()


def test_nan_loss_at_the_last_iteration_writes_no_final_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match="iteration 3"):
        _train(tmp_path, _Toy({3: "nan loss"}))
    assert _checkpoints(tmp_path) == [f"model_000000{i}.pth" for i in range(3)]
    for name in _checkpoints(tmp_path):
        assert torch.isfinite(_weights(tmp_path / name)).all(), name


def test_weights_ruined_by_an_infinite_gradient_are_never_saved(tmp_path):
    with pytest.raises(
        NonFiniteWeightsError, match=r"not saving checkpoint model_0000001: .* \(w\)"
    ):
        _train(tmp_path, _Toy({1: "inf grad"}))
    assert _checkpoints(tmp_path) == ["model_0000000.pth"]
    assert _tag(tmp_path) == "model_0000000.pth"


def test_finite_training_is_unchanged(tmp_path):
    model = _train(tmp_path, _Toy({}), max_iter=2)
    # SGD by hand: w ← w − 0.1·(2w + sign(w − 3)), from w = 1
    w = torch.ones(2)
    for _ in range(2):
        w = w - 0.1 * (2 * w + torch.sign(w - 3))
    assert torch.allclose(model.w.detach(), w)
    assert _checkpoints(tmp_path) == ["model_0000000.pth", "model_0000001.pth", "model_final.pth"]


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture
def saved(tmp_path):
    """A checkpointer of a seeded Linear(4, 2) that has saved model_0000001 (iteration 1)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    (tmp_path / "run").mkdir()
    checkpointer = DenseCLIPCheckpointer(model, str(tmp_path / "run"))
    checkpointer.save("model_0000001", iteration=1)
    return checkpointer


def _listing(folder):
    return sorted(os.listdir(folder))


def _patch_torch_save(monkeypatch, after_half):
    """torch.save writes half of the real bytes, calls ``after_half(file)``, then the rest."""
    real_save = torch.save

    def save(obj, f, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, **kwargs)
        data = buffer.getvalue()
        f.write(data[: len(data) // 2])
        after_half(f)
        f.write(data[len(data) // 2 :])

    monkeypatch.setattr(torch, "save", save)


def test_a_checkpoint_is_never_visible_half_written(saved, monkeypatch):
    folder = saved.save_dir
    seen = {}

    def look(_):
        seen["files"] = _listing(folder)
        seen["tag"] = _tag(folder)

    _patch_torch_save(monkeypatch, look)
    saved.save("model_0000002", iteration=2)
    partial = [name for name in seen["files"] if name.endswith(".partial")]
    assert "model_0000002.pth" not in seen["files"] and len(partial) == 1, seen
    assert seen["tag"] == "model_0000001.pth"
    assert _listing(folder) == ["last_checkpoint", "model_0000001.pth", "model_0000002.pth"]
    assert _tag(folder) == "model_0000002.pth"


def test_the_tag_file_is_replaced_atomically_after_an_fsync(saved, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        os,
        "replace",
        lambda src, dst: calls.append(f"replace {os.path.basename(dst)}") or real_replace(src, dst),
    )
    saved.save("model_0000002")
    replaces = [c for c in calls if c.startswith("replace")]
    assert replaces == ["replace model_0000002.pth", "replace last_checkpoint"]
    for replace in replaces:  # the data reached the disk before its rename
        assert calls[calls.index(replace) - 1] == "fsync", calls


@pytest.mark.parametrize("name", ["model_0000002", "model_0000001"], ids=["new", "overwrite"])
def test_disk_full_while_saving_leaves_the_previous_checkpoint_intact(saved, monkeypatch, name):
    folder = saved.save_dir
    before = _listing(folder)
    with open(os.path.join(folder, "model_0000001.pth"), "rb") as f:
        previous = f.read()

    def disk_full(_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    _patch_torch_save(monkeypatch, disk_full)
    with torch.no_grad():
        saved.model.weight.add_(1)
    with pytest.raises(OSError) as error:
        saved.save(name)
    assert error.value.errno == errno.ENOSPC
    message = str(error.value)
    assert f"checkpoint {name} was not saved (" in message and "No space left" in message
    assert "the last complete checkpoint is still" in message and "model_0000001.pth" in message
    assert "free disk space and --resume" in message
    assert _listing(folder) == before  # no partial file
    assert _tag(folder) == "model_0000001.pth"
    with open(os.path.join(folder, "model_0000001.pth"), "rb") as f:
        assert f.read() == previous


def test_a_non_finite_model_is_not_saved(saved):
    folder = saved.save_dir
    before = _listing(folder)
    with torch.no_grad():
        saved.model.bias[0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"in 1 tensors \(bias\)"):
        saved.save("model_final")
    assert _listing(folder) == before


def test_a_truncated_checkpoint_is_named_when_loaded(saved):
    path = os.path.join(saved.save_dir, "model_0000001.pth")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointReadError, match=f"cannot load checkpoint {path}"):
        saved.resume_or_load("", resume=True)


#: A process that writes FILE from PAYLOAD through denseclip's AtomicWriter (the way
#: DenseCLIPCheckpointer writes checkpoints and the last_checkpoint tag) and is SIGKILLed after
#: half the bytes. It loads only atomic.py (standard library), so it starts in milliseconds.
_KILLED_MID_WRITE = textwrap.dedent("""
    import importlib.util, os, signal, sys

    spec = importlib.util.spec_from_file_location("atomic", sys.argv[1])
    atomic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(atomic)
    target, payload = sys.argv[2], open(sys.argv[3], "rb").read()
    with atomic.AtomicWriter(target, "wb") as f:
        f.write(payload[: len(payload) // 2])
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
ATOMIC_PY = os.path.join(REPO_ROOT, "projects/DenseCLIP/denseclip/checkpoint/atomic.py")


def _write_and_get_killed(target: str, payload: bytes, tmp_path) -> None:
    payload_file = tmp_path / "payload.bin"
    payload_file.write_bytes(payload)
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_WRITE, ATOMIC_PY, target, str(payload_file)],
        capture_output=True,
        timeout=60,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]


@pytest.mark.parametrize("killed_while_writing", ["model_0000002.pth", "last_checkpoint"])
def test_run_killed_while_saving_resumes_from_the_last_complete_checkpoint(
    saved, tmp_path, killed_while_writing
):
    folder = saved.save_dir
    expected = {k: v.clone() for k, v in saved.model.state_dict().items()}
    with torch.no_grad():
        saved.model.weight.add_(1)
    buffer = io.BytesIO()
    torch.save({"model": saved.model.state_dict(), "iteration": 2}, buffer)
    if killed_while_writing == "last_checkpoint":  # checkpoint 2 complete, its tag being written
        saved.save("model_0000002", iteration=2)
        with open(os.path.join(folder, "last_checkpoint"), "w") as f:
            f.write("model_0000001.pth")  # the tag as it was before
        payload = b"model_0000002.pth"
    else:
        payload = buffer.getvalue()
    _write_and_get_killed(os.path.join(folder, killed_while_writing), payload, tmp_path)

    files = _listing(folder)
    assert [name for name in files if name.endswith(".partial")], files  # the dead write
    assert _tag(folder) == "model_0000001.pth"
    if killed_while_writing == "model_0000002.pth":
        assert "model_0000002.pth" not in files
    model = nn.Linear(4, 2)
    resumed = DenseCLIPCheckpointer(model, folder).resume_or_load("", resume=True)
    assert resumed["iteration"] == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())


# ----------------------------------------------------------------------------- before building


@pytest.fixture
def cfg(tiny_config, tmp_path):
    tiny_config.train.output_dir = str(tmp_path / "out")
    tiny_config.train.device = "cpu"
    return tiny_config


def _args(tmp_path, *opts, eval_only=False, resume=False):
    return argparse.Namespace(
        config_file=os.path.join(REPO_ROOT, TINY_CONFIG),
        opts=[f"train.output_dir={tmp_path / 'out'}", "train.device=cpu", *opts],
        dataset=None,
        eval_only=eval_only,
        resume=resume,
        aug_test=False,
    )


def test_amp_without_cuda_stops_setup_before_anything_is_built(tmp_path, cuda):
    cuda(False)
    with pytest.raises(RuntimeError, match="train.amp.enabled=True needs a CUDA GPU .* has none"):
        setup(_args(tmp_path, "train.amp.enabled=True"))
    assert not (tmp_path / "out").exists()


def test_amp_on_the_cpu_of_a_cuda_machine_asks_for_the_gpu(cfg, cuda):
    cuda(True)
    cfg.train.amp.enabled = True
    with pytest.raises(RuntimeError, match="train.device is 'cpu': set train.device=cuda"):
        check_run(cfg)


def test_amp_precision_must_be_a_half_precision_type(cfg, cuda):
    cuda(True)
    cfg.train.update(device="cuda", amp={"enabled": True, "precision": "float32"})
    with pytest.raises(ValueError, match="expected one of float16, bfloat16, got 'float32'"):
        check_run(cfg)


def test_cuda_device_without_cuda_is_named(cfg, cuda):
    cuda(False)
    cfg.train.device = "cuda"
    with pytest.raises(RuntimeError, match="train.device='cuda', but this machine has no CUDA"):
        check_run(cfg)


def test_missing_init_checkpoint_is_reported_before_building(cfg, tmp_path):
    cfg.train.init_checkpoint = str(tmp_path / "RN50.pth")
    with pytest.raises(FileNotFoundError, match=r"train.init_checkpoint: expected a checkpoint "):
        check_run(cfg)


def test_resume_with_a_checkpoint_in_the_output_folder_needs_no_init_checkpoint(cfg, tmp_path):
    cfg.train.init_checkpoint = str(tmp_path / "RN50.pth")
    os.makedirs(cfg.train.output_dir)
    with open(os.path.join(cfg.train.output_dir, "last_checkpoint"), "w") as f:
        f.write("model_0000001.pth")
    check_run(cfg, resume=True)


def test_eval_only_needs_an_existing_checkpoint(cfg, tmp_path):
    with pytest.raises(ValueError, match="--eval-only needs the weights"):
        check_run(cfg, eval_only=True)
    cfg.train.init_checkpoint = str(tmp_path)
    with pytest.raises(FileNotFoundError, match="found a folder"):
        check_run(cfg, eval_only=True)


def test_missing_ade20k_names_its_folders_and_the_preparation_script():
    metadata = MetadataCatalog.get("ade20k_sem_seg_train")
    if os.path.exists(metadata.image_root):
        pytest.skip("ADE20K is prepared on this machine")
    with pytest.raises(DatasetUnavailableError) as error:
        check_datasets_available({"dataloader.train.dataset.names": "ade20k_sem_seg_train"})
    message = str(error.value)
    assert "dataloader.train.dataset.names: dataset 'ade20k_sem_seg_train'" in message
    assert metadata.image_root in message and metadata.sem_seg_root in message
    assert "datasets/prepare_ade20k_sem_seg.py" in message and "ADEChallengeData2016.zip" in message


def test_missing_coco_names_its_files_and_layout():
    metadata = MetadataCatalog.get("coco_2017_val")
    if os.path.exists(metadata.json_file):
        pytest.skip("COCO is prepared on this machine")
    with pytest.raises(DatasetUnavailableError) as error:
        check_datasets_available({"dataloader.test.dataset.names": ["coco_2017_val"]})
    message = str(error.value)
    assert (
        metadata.json_file in message
        and "coco/annotations/instances_{train,val}2017.json" in message
    )


def test_a_dataset_folder_gone_since_registration_is_named(tmp_path, dataset_name):
    (tmp_path / "ponds").mkdir()
    root = write_three_class_dataset(str(tmp_path / "ponds"))
    register_folder_dataset(dataset_name, root)
    os.rename(root, str(tmp_path / "moved"))
    with pytest.raises(DatasetUnavailableError, match=f"image_root {root}/images/train"):
        check_datasets_available({"dataloader.train.dataset.names": f"{dataset_name}_train"})


def test_an_unregistered_dataset_is_named_with_the_closest_names(synthetic_datasets):
    with pytest.raises(DatasetUnavailableError, match="Did you mean: synthetic_seg_train"):
        check_datasets_available({"dataloader.train.dataset.names": "synthetic_seg_trian"})


def test_training_checks_the_test_dataset_when_it_evaluates(cfg):
    cfg.dataloader.test.dataset.names = "nowhere_val"
    with pytest.raises(DatasetUnavailableError, match="dataloader.test.dataset.names"):
        check_run(cfg)
    del cfg.dataloader["evaluator"]
    check_run(cfg)


def test_eval_only_checks_only_the_test_dataset(cfg, tmp_path):
    cfg.dataloader.train.dataset.names = "nowhere_train"
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")
    cfg.train.init_checkpoint = str(checkpoint)
    check_run(cfg, eval_only=True)
    with pytest.raises(DatasetUnavailableError, match="dataloader.train.dataset.names"):
        check_run(cfg)


def test_aug_test_of_a_detector_is_refused(load_tiny_config, tmp_path):
    cfg = load_tiny_config("retinanet_denseclip_tiny")
    cfg.tta = {"enabled": True}
    with pytest.raises(ValueError, match="DenseCLIPRetinaNet has no sem_seg_head"):
        check_run(cfg)


def test_setup_stops_at_a_missing_dataset_before_creating_the_output_folder(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="nowhere_train"):
        setup(_args(tmp_path, "dataloader.train.dataset.names=nowhere_train"))
    assert not (tmp_path / "out").exists()
