"""Specification of safe checkpoint loading (``denseclip.checkpoint.safe_load``): every entry
point that reads a file a user names refuses a file whose unpickling would run code, naming the
file and the object, and writes nothing; the legitimate formats still load.

The crafted files carry a ``__reduce__`` payload whose unpickling calls ``open(marker, "w")``:
the marker file appears exactly when the payload ran.
"""

import argparse
import os
import pickle
import re

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, TINY_CONFIG, load_python_file, run_train_net, tiny_overrides
from mmcv_reference import save_mmcv_checkpoint
from PIL import Image
from torch import nn

from detectron2.config import LazyConfig, instantiate

from denseclip import Predictor
from denseclip.checkpoint import (
    TRUST_VARIABLE,
    CheckpointReadError,
    DenseCLIPCheckpointer,
    OfficialCheckpointError,
    SafeDetectionCheckpointer,
    UntrustedCheckpointError,
    combine_imagenet_and_clip,
    load_official_checkpoint,
    load_openai_clip_state_dict,
    load_pickle_file,
    load_torch_file,
)
from denseclip.engine.train import _load_initial_weights

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_CONFIG_PATH = os.path.join(REPO_ROOT, TINY_CONFIG)
IMAGENET_TINY_CONFIG_PATH = os.path.join(
    REPO_ROOT, "configs/Synthetic/denseclip_fpn_imagenet_tiny.py"
)
# how pickle names the builtin open (builtins.open is io.open)
PAYLOAD_GLOBAL = "io.open"


class CreatesMarker:
    """Unpickling this calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_plain_pickle(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _write_legacy_torch(obj, path):
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _payload_checkpoint(marker):
    """A detectron2-style checkpoint with the payload among its entries."""
    return {"model": {"w": torch.zeros(2)}, "__author__": CreatesMarker(marker)}


#: Each format a user may hand over, and how the payload is written in it.
PAYLOAD_FORMATS = {
    # a detectron2 / Caffe2 model-zoo file, read by pickle
    "pkl": (
        "payload.pkl",
        lambda marker, path: _write_plain_pickle(_payload_checkpoint(marker), path),
    ),
    # torch.save's zip format
    "pth": ("payload.pth", lambda marker, path: torch.save(_payload_checkpoint(marker), path)),
    # torch.save's legacy format
    "legacy pth": (
        "payload_legacy.pth",
        lambda marker, path: _write_legacy_torch(_payload_checkpoint(marker), path),
    ),
    # a plain pickle under a .pth name
    "pickle as pth": (
        "payload_pickle.pth",
        lambda marker, path: _write_plain_pickle(_payload_checkpoint(marker), path),
    ),
    # an official release (mmcv) file: the payload in its meta
    "mmcv pth": (
        "payload_mmcv.pth",
        lambda marker, path: torch.save(
            {"meta": {"hook_msgs": CreatesMarker(marker)}, "state_dict": {"w": torch.zeros(2)}},
            path,
        ),
    ),
}


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "MARKER"
    yield str(path)
    assert not path.exists(), "the payload ran"


def write_payload(folder, marker, kind) -> str:
    name, write = PAYLOAD_FORMATS[kind]
    path = str(folder / name)
    write(marker, path)
    return path


def assert_refusal_names(message: str, path: str) -> None:
    assert f"{path}: refused to load" in message, message
    assert PAYLOAD_GLOBAL in message, message
    assert f"{TRUST_VARIABLE}=1" in message, message


@pytest.fixture(scope="module")
def tiny_model_state():
    torch.manual_seed(0)
    return instantiate(LazyConfig.load(TINY_CONFIG_PATH).model).state_dict()


# ----------------------------------------------------------------------------- the loaders


@pytest.mark.parametrize("kind", ["pth", "legacy pth", "pickle as pth", "mmcv pth"])
def test_load_torch_file_refuses_a_payload_naming_the_file_and_object(tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    with pytest.raises(UntrustedCheckpointError) as error:
        load_torch_file(path)
    assert_refusal_names(str(error.value), path)
    assert error.value.path == path and PAYLOAD_GLOBAL in error.value.names


def test_load_pickle_file_refuses_a_payload_naming_the_file_and_object(tmp_path, marker):
    path = write_payload(tmp_path, marker, "pkl")
    with pytest.raises(UntrustedCheckpointError) as error:
        load_pickle_file(path)
    assert_refusal_names(str(error.value), path)


@pytest.mark.parametrize("loader", [load_torch_file, load_pickle_file])
def test_the_opt_in_loads_a_trusted_file_with_other_objects(tmp_path, monkeypatch, loader):
    path = str(tmp_path / "trusted.bin")
    content = {"args": argparse.Namespace(lr=0.1), "w": np.arange(3)}
    if loader is load_torch_file:
        torch.save(content, path)
    else:
        _write_plain_pickle(content, path)
    with pytest.raises(UntrustedCheckpointError, match=r"argparse\.Namespace"):
        loader(path)
    monkeypatch.setenv(TRUST_VARIABLE, "1")
    assert loader(path)["args"] == argparse.Namespace(lr=0.1)


def test_only_the_value_1_opts_in(tmp_path, monkeypatch):
    path = str(tmp_path / "trusted.pth")
    torch.save({"args": argparse.Namespace(lr=0.1)}, path)
    for value in ("0", "", "yes"):
        monkeypatch.setenv(TRUST_VARIABLE, value)
        with pytest.raises(UntrustedCheckpointError):
            load_torch_file(path)


@pytest.mark.parametrize("name", ["notes.pth", "notes.pkl"])
def test_a_file_that_is_no_checkpoint_is_a_read_error_not_a_refusal(tmp_path, name):
    path = tmp_path / name
    path.write_text("# notes\n")
    with pytest.raises(CheckpointReadError, match=f"cannot load checkpoint {path}"):
        DenseCLIPCheckpointer(nn.Linear(2, 2)).load(str(path))


# ----------------------------------------------------------------------------- legitimate files


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_detectron2_model_zoo_pkl_with_numpy_arrays_loads(tmp_path, tiny_model_state, protocol):
    path = str(tmp_path / "model_final.pkl")
    with open(path, "wb") as f:
        content = {
            "model": {k: v.numpy() for k, v in tiny_model_state.items()},
            "__author__": "Detectron2 Model Zoo",
            "best_score": np.float64(0.5),
            "empty": np.zeros(0, np.float32),
        }
        pickle.dump(content, f, protocol=protocol)
    torch.manual_seed(1)
    model = instantiate(LazyConfig.load(TINY_CONFIG_PATH).model)
    DenseCLIPCheckpointer(model).load(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, tiny_model_state[key]), key


class _Caffe2Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 1)


def test_a_caffe2_pkl_with_blobs_loads_by_name_matching(tmp_path):
    weight = np.random.default_rng(0).random((3, 2, 1, 1), dtype=np.float32)
    bias = np.arange(3, dtype=np.float32)
    path = str(tmp_path / "model_final.pkl")
    with open(path, "wb") as f:
        blobs = {"conv_w": weight, "conv_b": bias, "conv_w_momentum": np.zeros_like(weight)}
        pickle.dump({"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}, f, protocol=2)
    model = _Caffe2Toy()
    SafeDetectionCheckpointer(model).load(path)
    np.testing.assert_array_equal(model.conv.weight.detach().numpy(), weight)
    np.testing.assert_array_equal(model.conv.bias.detach().numpy(), bias)


def test_an_official_mmcv_file_loads(tmp_path):
    path = save_mmcv_checkpoint(nn.Linear(3, 2), tmp_path / "iter_80000.pth", ["cat", "sky"])
    state_dict, meta = load_official_checkpoint(path)
    assert sorted(state_dict) == ["bias", "weight"]
    assert isinstance(meta["hook_msgs"]["best_score"], np.float64)


class _ClipLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(2, 2)
        self.logit_scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.visual(x) * self.logit_scale


def test_a_clip_torchscript_archive_loads(tmp_path):
    path = str(tmp_path / "RN50.pt")
    torch.manual_seed(0)
    module = _ClipLike()
    torch.jit.save(torch.jit.script(module), path)
    state_dict = load_openai_clip_state_dict(path)
    assert torch.equal(state_dict["visual.weight"], module.visual.weight.detach())


# ----------------------------------------------------------------------------- train_net.py


def _train_checkpointer(load_tiny_config, folder):
    cfg = load_tiny_config()
    cfg.train.output_dir = str(folder)
    return cfg, DenseCLIPCheckpointer(nn.Linear(2, 2), str(folder))


@pytest.mark.parametrize("kind", list(PAYLOAD_FORMATS))
def test_train_init_checkpoint_refuses_a_payload(load_tiny_config, tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    cfg, checkpointer = _train_checkpointer(load_tiny_config, tmp_path / "out")
    cfg.train.init_checkpoint = path
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_initial_weights(checkpointer, cfg, resume=False)
    assert_refusal_names(str(error.value), path)


@pytest.mark.parametrize("kind", list(PAYLOAD_FORMATS))
def test_resume_refuses_a_payload_named_by_last_checkpoint(
    load_tiny_config, tmp_path, marker, kind
):
    out = tmp_path / "out"
    out.mkdir()
    path = write_payload(out, marker, kind)
    (out / "last_checkpoint").write_text(os.path.basename(path))
    cfg, checkpointer = _train_checkpointer(load_tiny_config, out)
    with pytest.raises(UntrustedCheckpointError) as error:
        _load_initial_weights(checkpointer, cfg, resume=True)
    assert_refusal_names(str(error.value), path)


def test_train_net_resume_refuses_a_pkl_payload(tmp_path, marker, datasets_dir):
    out = tmp_path / "out"
    out.mkdir()
    path = write_payload(out, marker, "pkl")
    (out / "last_checkpoint").write_text(os.path.basename(path))
    run = run_train_net(
        ["--config-file", TINY_CONFIG, "--resume", *tiny_overrides(str(out))], datasets_dir
    )
    assert run.returncode != 0, run.describe()
    assert_refusal_names(run.output, path)
    assert not list(out.glob("model_*.pth"))


# ----------------------------------------------------------------------------- Predictor, tools


@pytest.mark.parametrize("kind", ["pkl", "pth", "pickle as pth"])
def test_predictor_refuses_a_payload(tiny_config, tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    with pytest.raises(UntrustedCheckpointError) as error:
        Predictor(tiny_config, weights=path, device="cpu")
    assert_refusal_names(str(error.value), path)


@pytest.mark.parametrize("kind", ["pkl", "pth"])
def test_demo_refuses_a_payload_given_as_weights(tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    image = tmp_path / "image.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    output = tmp_path / "pictures"
    argv = ["--config-file", TINY_CONFIG_PATH, "--weights", path]
    with pytest.raises(UntrustedCheckpointError) as error:
        load_python_file("tools/demo.py").main(
            argv + ["--input", str(image), "--output", str(output), "--device", "cpu"]
        )
    assert_refusal_names(str(error.value), path)
    assert not output.exists() or not os.listdir(output)


@pytest.mark.parametrize("tool", ["export_deploy", "export_model"])
def test_export_tools_refuse_a_payload_given_as_weights(tmp_path, marker, tool):
    path = write_payload(tmp_path, marker, "pkl")
    output = tmp_path / "export"
    argv = ["--config-file", TINY_CONFIG_PATH, "--weights", path]
    if tool == "export_deploy":
        argv += ["--output", str(output / "deploy.pth")]
    else:
        argv += ["--format", "torchscript", "--output", str(output)]
    with pytest.raises(UntrustedCheckpointError) as error:
        load_python_file(f"tools/{tool}.py").main(argv)
    assert_refusal_names(str(error.value), path)
    assert not output.exists()


@pytest.mark.parametrize("kind", ["pth", "legacy pth", "pkl"])
def test_convert_clip_refuses_a_payload_and_writes_nothing(tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    dst = tmp_path / "out" / "converted.pth"
    with pytest.raises(SystemExit) as error:
        load_python_file("tools/convert_clip.py").main([path, str(dst)])
    assert_refusal_names(str(error.value), path)
    assert not dst.parent.exists()


@pytest.mark.parametrize("kind", ["mmcv pth", "pickle as pth"])
def test_convert_official_checkpoint_refuses_a_payload_and_writes_nothing(tmp_path, marker, kind):
    path = write_payload(tmp_path, marker, kind)
    dst = tmp_path / "out" / "converted.pth"
    with pytest.raises(SystemExit) as error:
        load_python_file("tools/convert_official_checkpoint.py").main([path, str(dst)])
    assert_refusal_names(str(error.value), path)
    assert not dst.parent.exists()


@pytest.mark.parametrize("which, kind", [("imagenet", "pkl"), ("imagenet", "pth"), ("clip", "pth")])
def test_combine_imagenet_clip_refuses_a_payload_and_writes_nothing(tmp_path, marker, which, kind):
    path = write_payload(tmp_path, marker, kind)
    clean = str(tmp_path / "clean.pth")
    torch.save({"model": {}}, clean)
    imagenet, clip = (path, clean) if which == "imagenet" else (clean, path)
    dst = tmp_path / "out" / "combined.pth"
    with pytest.raises(SystemExit) as error:
        load_python_file("tools/combine_imagenet_clip.py").main(
            ["--config-file", IMAGENET_TINY_CONFIG_PATH, imagenet, clip, str(dst)]
        )
    assert_refusal_names(str(error.value), path)
    assert not dst.parent.exists()


def test_combine_imagenet_and_clip_refuses_a_pkl_payload(load_tiny_config, tmp_path, marker):
    path = write_payload(tmp_path, marker, "pkl")
    model = instantiate(load_tiny_config("denseclip_fpn_imagenet_tiny").model)
    with pytest.raises(UntrustedCheckpointError, match=re.escape(path)):
        combine_imagenet_and_clip(model, path, {})


def test_the_official_loader_reports_the_refusal_as_its_error(tmp_path, marker):
    path = write_payload(tmp_path, marker, "mmcv pth")
    with pytest.raises(OfficialCheckpointError) as error:
        load_official_checkpoint(path)
    assert_refusal_names(str(error.value), path)
