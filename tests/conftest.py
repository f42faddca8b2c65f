"""Shared fixtures: tiny DenseCLIP modules built directly from classes, and the tiny configs.

Every builder seeds torch first, so a fixture gives the same weights in every test.
"""

import copy
import os
import uuid

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Three class names of one BPE token each.
TINY_CLASS_NAMES = ("cat", "dog", "sky")
#: Sizes of the tiny modules below.
TINY_WIDTH = 8  # CLIP ResNet stem width: res2..res5 have 32, 64, 128, 256 channels
TINY_EMBED_DIM = 32  # C, the joint embedding width
TINY_CONTEXT_LENGTH = 9  # 5 class tokens + 4 learnable contexts
TINY_CLASS_TOKEN_LENGTH = 5


# ----------------------------------------------------------------------------- environment


@pytest.fixture(scope="session")
def datasets_dir(tmp_path_factory):
    """A per-session folder for generated datasets."""
    return tmp_path_factory.mktemp("denseclip_datasets")


@pytest.fixture
def dataset_name():
    """A fresh dataset name, unregistered again after the test."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = f"test_{uuid.uuid4().hex[:8]}"
    yield name
    for split in ("train", "val"):
        if f"{name}_{split}" in DatasetCatalog.list():
            DatasetCatalog.remove(f"{name}_{split}")
            MetadataCatalog.remove(f"{name}_{split}")


@pytest.fixture(scope="session", autouse=True)
def _datasets_in_tmp(datasets_dir):
    """Point $DENSECLIP_DATASETS at a session tmp dir so that no test writes into $HOME."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DENSECLIP_DATASETS", str(datasets_dir))
        yield


@pytest.fixture(scope="session", autouse=True)
def host_memory_calls():
    """The calls of ``keep_freed_host_memory`` by in-process runs of the training engine and the
    benchmark, recorded instead of changing this test process's malloc for the tests after them
    (subprocesses run the real one)."""
    from denseclip.engine import host_memory

    calls = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(host_memory, "keep_freed_host_memory", lambda: calls.append(True) or True)
        yield calls


@pytest.fixture
def single_torch_thread():
    """One intra-op thread for the duration of a test (opt in with
    ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``).

    The tiny models gain nothing from more threads, and on a busy 2-core machine OpenMP threads
    spinning against other processes made these tests about 10× slower (115 s vs 12 s measured).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ----------------------------------------------------------------------------- tiny modules


@pytest.fixture
def class_names():
    return list(TINY_CLASS_NAMES)


@pytest.fixture
def make_image_encoder():
    """CLIPResNet(layers=[1, 1, 1, 1], width=8, output_dim=32, heads=2, input_resolution=64)."""
    from denseclip.clip import CLIPResNet

    def make(seed=0, **kwargs):
        torch.manual_seed(seed)
        args = dict(
            layers=[1, 1, 1, 1],
            width=TINY_WIDTH,
            output_dim=TINY_EMBED_DIM,
            heads=2,
            input_resolution=64,
        )
        args.update(kwargs)
        return CLIPResNet(**args)

    return make


@pytest.fixture
def make_prompts(class_names):
    """ClassTextPrompts over a 1-layer, width-32 text encoder with 4 contexts."""
    from denseclip.clip import CLIPTextEncoder
    from denseclip.prompting import ClassTextPrompts

    def make(seed=1, names=None, class_token_length=TINY_CLASS_TOKEN_LENGTH, **kwargs):
        torch.manual_seed(seed)
        text_encoder = CLIPTextEncoder(
            context_length=TINY_CONTEXT_LENGTH,
            width=32,
            heads=2,
            layers=1,
            embed_dim=TINY_EMBED_DIM,
        )
        return ClassTextPrompts(
            text_encoder,
            names or class_names,
            class_token_length=class_token_length,
            **kwargs,
        )

    return make


@pytest.fixture
def make_context_decoder():
    """ContextDecoder(visual_dim=32, width=16, num_heads=2, num_layers=1)."""
    from denseclip.prompting import ContextDecoder

    def make(seed=2, **kwargs):
        torch.manual_seed(seed)
        args = dict(visual_dim=TINY_EMBED_DIM, width=16, num_heads=2, num_layers=1)
        args.update(kwargs)
        return ContextDecoder(**args)

    return make


@pytest.fixture
def make_backbone(make_image_encoder, make_prompts, make_context_decoder):
    """A tiny DenseCLIPBackbone; ``with_decoder=False`` leaves out the context decoder."""
    from denseclip.backbone import DenseCLIPBackbone

    def make(with_decoder=True, **kwargs):
        decoder = make_context_decoder() if with_decoder else None
        return DenseCLIPBackbone(make_image_encoder(), make_prompts(), decoder, **kwargs)

    return make


@pytest.fixture
def prompts(make_prompts):
    return make_prompts()


@pytest.fixture
def context_decoder(make_context_decoder):
    return make_context_decoder()


@pytest.fixture
def backbone(make_backbone):
    """Tiny DenseCLIPBackbone (with context decoder, score_scale 1), in eval mode."""
    return make_backbone().eval()


# ----------------------------------------------------------------------------- tiny configs


@pytest.fixture(scope="session")
def synthetic_datasets():
    """The built-in synthetic datasets registered, as the configs of configs/Synthetic/ do."""
    from denseclip.data.synthetic import (
        register_synthetic_detection,
        register_synthetic_segmentation,
    )

    register_synthetic_segmentation()
    register_synthetic_detection()


@pytest.fixture(scope="session")
def _tiny_config_cache():
    from detectron2.config import LazyConfig

    return {}, LazyConfig.load


@pytest.fixture(scope="session")
def load_tiny_config(_tiny_config_cache):
    """``load_tiny_config(name)``: a fresh (deep-copied, free to edit) LazyConfig of
    ``configs/Synthetic/<name>.py``; each file is parsed once per session (usable by fixtures of
    any scope)."""
    cache, load = _tiny_config_cache

    def get(name="denseclip_fpn_tiny"):
        if name not in cache:
            cache[name] = load(os.path.join(REPO_ROOT, "configs", "Synthetic", f"{name}.py"))
        return copy.deepcopy(cache[name])

    return get


@pytest.fixture
def tiny_config(load_tiny_config):
    """configs/Synthetic/denseclip_fpn_tiny.py (deep copy, free to edit)."""
    return load_tiny_config("denseclip_fpn_tiny")
