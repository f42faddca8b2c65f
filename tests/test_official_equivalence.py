"""Official DenseCLIP checkpoints, converted, predict what the official code predicts.

``official_reference.py`` re-states the official segmentation forward (the official DenseCLIP
modules on mmseg 0.19) with official parameter names. Each equivalence test fabricates an
official mmcv checkpoint with random weights at a tiny size, runs the reference on an image,
converts the file with ``denseclip.checkpoint`` (what ``tools/convert_official_checkpoint.py``
runs), loads it strictly into our model built from the tiny LazyConfig at the same sizes, and
compares the ``sem_seg`` logits. Run with ``-s`` to see the largest difference of each case.

Images (whole mode) and slide windows whose sides are not multiples of 32 run at their own size,
as in mmseg (``pad_windows=False``, the configs' default): the FPN and the head follow the
levels' sizes as the strided layers round them. Only sides under 32 pixels, which the official
encoders cannot take, are padded.
"""

import dataclasses
import importlib.util
import os
from typing import Sequence, Tuple

import official_reference as ref
import pytest
import torch
from conftest import REPO_ROOT

from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, instantiate

from denseclip.checkpoint import (
    DenseCLIPCheckpointer,
    OfficialCheckpointError,
    check_class_names,
    check_matches_model,
    convert_official_state_dict,
    load_official_checkpoint,
)
from denseclip.clip import CLIPVisionTransformer
from denseclip.data import ADE20K_CLASSES

CLASS_NAMES = ("cat", "dog", "sky", "grass")
K = len(CLASS_NAMES)
TEXT_PREFIX = "backbone.bottom_up.prompts.text_encoder."
TINY_CONFIG_PATH = os.path.join(REPO_ROOT, "configs", "Synthetic", "denseclip_fpn_tiny.py")
TOLERANCE = 1e-5  # largest logit difference / logit range; float32 round-off gives ~5e-7
WHOLE = {"mode": "whole"}  # official test_cfg dicts; tiny slide windows
SLIDE = {"mode": "slide", "crop_size": (64, 64), "stride": (43, 43)}

pytestmark = pytest.mark.usefixtures("single_torch_thread")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The size fields shared by an official config and ours (defaults: the tiny test models).

    The official attention pool always has 32 heads; ours is configured to match."""

    layers: Tuple[int, ...] = (1, 1, 1, 1)
    width: int = 8  # CLIP ResNet stem width: res2..res5 have 4·, 8·, 16·, 32·width channels
    embed: int = 32  # C: attention pool / ViT output, text output, context decoder input
    resolution: int = 64  # input_resolution of the stored positional embeddings
    vit_width: int = 32
    vit_layers: int = 4
    vit_heads: int = 4
    out_indices: Tuple[int, ...] = (0, 1, 2, 3)
    context_length: int = 13  # 5 class tokens + 8 contexts, as official
    text_width: int = 32
    text_heads: int = 4
    text_layers: int = 2
    decoder_width: int = 32
    decoder_heads: int = 4
    decoder_layers: int = 2
    fpn_channels: int = 32
    head_channels: int = 16


TINY = Sizes()
RN50 = Sizes(
    layers=(3, 4, 6, 3),
    width=64,
    embed=1024,
    resolution=512,
    text_width=512,
    text_heads=8,
    text_layers=12,
    decoder_width=256,
    decoder_layers=3,
    fpn_channels=256,
    head_channels=256,
)
RN101 = dataclasses.replace(RN50, layers=(3, 4, 23, 3), embed=512)
VIT_B = dataclasses.replace(
    RN50,
    embed=512,
    resolution=640,
    vit_width=768,
    vit_layers=12,
    vit_heads=12,
    out_indices=(3, 5, 7, 11),
)


def build_official(
    kind: str, sizes: Sizes, class_names: Sequence[str], test_cfg: dict
) -> ref.EncoderDecoder:
    """The official model of ``kind`` as the official configs build it: "resnet" / "vit"
    (DenseCLIP with a CLIP ResNet / ViT) or "resnet_baseline" / "vit_baseline" (CLIP image
    encoder + Semantic FPN, no text side)."""
    num_classes = len(class_names)
    with_text = not kind.endswith("baseline")
    if kind.startswith("vit"):
        backbone = ref.CLIPVisionTransformer(
            sizes.resolution,
            sizes.vit_width,
            sizes.vit_layers,
            sizes.vit_heads,
            sizes.embed,
            sizes.out_indices,
            get_embeddings=with_text,
        )
        in_channels = [sizes.vit_width] * 4
        score_concat_index = 2
    else:
        backbone = ref.CLIPResNet(
            sizes.layers, sizes.width, sizes.embed, sizes.resolution, with_attention=with_text
        )
        in_channels = [sizes.width * 4 * 2**i for i in range(4)]
        score_concat_index = 3
    if with_text:
        in_channels[score_concat_index] += num_classes
    neck = ref.FPN(in_channels, sizes.fpn_channels)
    head = ref.FPNHead([sizes.fpn_channels] * 4, sizes.head_channels, num_classes)
    if not with_text:
        return ref.EncoderDecoder(backbone, neck, head, test_cfg)
    text_encoder = ref.CLIPTextContextEncoder(
        sizes.context_length, sizes.text_width, sizes.text_heads, sizes.text_layers, sizes.embed
    )
    decoder = ref.ContextDecoder(
        sizes.decoder_width, sizes.decoder_heads, sizes.decoder_layers, sizes.embed
    )
    return ref.DenseCLIP(
        backbone,
        text_encoder,
        decoder,
        neck,
        head,
        class_names,
        test_cfg,
        score_concat_index=score_concat_index,
    )


def tiny_config(load_tiny_config, kind: str, test_cfg: dict):
    """Our tiny LazyConfig of ``kind`` with the sizes of ``TINY`` and the given test settings."""
    sizes = TINY
    with_text = not kind.endswith("baseline")
    cfg = load_tiny_config("denseclip_fpn_tiny" if with_text else "fpn_clip_tiny")
    encoder = cfg.model.backbone.bottom_up
    if kind.startswith("vit"):
        encoder.image_encoder = L(CLIPVisionTransformer)(
            input_resolution=sizes.resolution,
            width=sizes.vit_width,
            layers=sizes.vit_layers,
            heads=sizes.vit_heads,
            output_dim=sizes.embed,
            out_indices=sizes.out_indices,
            norm="BN",
            with_embeddings=with_text,
        )
    else:
        encoder.image_encoder.update(
            layers=list(sizes.layers), width=sizes.width, input_resolution=sizes.resolution
        )
        if with_text:
            encoder.image_encoder.update(output_dim=sizes.embed, heads=32)
    if with_text:
        encoder.prompts.text_encoder.update(
            context_length=sizes.context_length,
            width=sizes.text_width,
            heads=sizes.text_heads,
            layers=sizes.text_layers,
            embed_dim=sizes.embed,
        )
        encoder.prompts.class_names = list(CLASS_NAMES)
        encoder.context_decoder.update(
            visual_dim=sizes.embed,
            width=sizes.decoder_width,
            num_heads=sizes.decoder_heads,
            num_layers=sizes.decoder_layers,
        )
    cfg.model.backbone.out_channels = sizes.fpn_channels
    cfg.model.sem_seg_head.update(num_classes=K, conv_dims=sizes.head_channels, norm="BN")
    cfg.model.test_mode = test_cfg["mode"]
    if test_cfg["mode"] == "slide":
        cfg.model.crop_size = test_cfg["crop_size"]
        cfg.model.stride = test_cfg["stride"]
    return cfg


def emphasize_score_channels_(official: ref.EncoderDecoder, factor: float = 30.0) -> None:
    """The K score channels are a few among hundreds at the FPN input, so with plain random
    weights the text side barely moves the logits; scaling their lateral-conv weights makes the
    comparison sensitive to it (see test_the_text_side_drives_the_compared_logits)."""
    if isinstance(official, ref.DenseCLIP):
        with torch.no_grad():
            official.neck.lateral_convs[official.score_concat_index].conv.weight[:, -K:] *= factor


def save_official_checkpoint(model: torch.nn.Module, path, class_names=CLASS_NAMES) -> str:
    """An official release file: mmcv's ``{'meta', 'state_dict'}``."""
    meta = {"CLASSES": tuple(class_names), "mmcv_version": "1.3.17", "iter": 80000}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)
    return str(path)


@pytest.fixture
def official_and_ours(tmp_path, load_tiny_config):
    """(official reference, our converted model), both in eval mode, for a kind and test_cfg."""

    def make(kind: str, test_cfg: dict, seed: int = 0):
        official = ref.randomize_(build_official(kind, TINY, CLASS_NAMES, test_cfg), seed).eval()
        emphasize_score_channels_(official)
        path = save_official_checkpoint(official, tmp_path / f"official_{kind}.pth")
        converted = convert_official_state_dict(load_official_checkpoint(path)[0]).state_dict
        ours = instantiate(tiny_config(load_tiny_config, kind, test_cfg).model)
        check_matches_model(converted, ours.state_dict())
        ours.load_state_dict(converted)
        return official, ours.eval()

    return make


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """3×H×W RGB in 0..255, as our models take it."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed)) * 255


def compare(official, ours, image, out_size=None, label="") -> None:
    """Runs both on ``image``; asserts equal shapes and logits within TOLERANCE × the logit
    range, and prints the largest difference."""
    out_size = out_size or tuple(image.shape[1:])
    with torch.no_grad():
        expected = official(ref.normalize(image), out_size)[0]
        actual = ours([{"image": image, "height": out_size[0], "width": out_size[1]}])[0]
    actual = actual["sem_seg"]
    assert actual.shape == expected.shape == (K, *out_size)
    difference = (actual - expected).abs().max().item()
    span = (expected.max() - expected.min()).item()
    print(f"\n{label}: max |ours - official| = {difference:.2e}, logit range {span:.3f}")
    assert span > 0.1, "degenerate logits: the comparison would prove nothing"
    assert difference <= TOLERANCE * span


KINDS = ["resnet", "vit", "resnet_baseline", "vit_baseline"]


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("size", [(96, 128), (90, 141)], ids=["96x128", "90x141"])
@pytest.mark.parametrize("kind", KINDS)
def test_whole_inference_matches_official(official_and_ours, kind, size):
    """Multiples of 32, and not: 90×141 makes the CLIP ResNet's levels 23×36, 11×18, 5×9, 2×4
    and the ViT's 20×32, 10×16, 5×8, 2×4."""
    official, ours = official_and_ours(kind, WHOLE)
    compare(official, ours, random_image(*size), label=f"{kind}, whole {size[0]}x{size[1]}")


@pytest.mark.parametrize("kind", KINDS)
def test_slide_inference_matches_official(official_and_ours, kind):
    """100×150 (not multiples of 32) in overlapping 64×64 windows, stride 43: 3×3 windows, the
    last row and column shifted back to the border, counts 1 to 4 per pixel."""
    official, ours = official_and_ours(kind, SLIDE)
    compare(official, ours, random_image(100, 150), label=f"{kind}, slide 100x150")


def test_slide_windows_shrink_to_a_smaller_image_as_official(official_and_ours):
    """A 32-pixel-high image under 64×64 windows: the windows are the image's height."""
    official, ours = official_and_ours("resnet", SLIDE)
    compare(official, ours, random_image(32, 150), label="resnet, slide 32x150")


def test_logits_are_resized_to_the_original_size_as_official(official_and_ours):
    official, ours = official_and_ours("resnet", WHOLE)
    compare(official, ours, random_image(96, 128), (75, 110), label="resnet, whole 96x128->75x110")


@pytest.mark.parametrize("kind", ["resnet", "vit"])
def test_the_text_side_drives_the_compared_logits(official_and_ours, kind):
    """Guards the tests' power: a small change of the contexts (which reach the logits through
    the text encoder, the context decoder and the score map) moves the official logits by far
    more than the tolerance."""
    official, _ = official_and_ours(kind, WHOLE)
    image = ref.normalize(random_image(96, 128))
    with torch.no_grad():
        before = official(image, (96, 128))
        official.contexts.add_(0.1 * torch.randn_like(official.contexts))
        after = official(image, (96, 128))
    assert (before - after).abs().max() > 10 * TOLERANCE * (before.max() - before.min())


# ----------------------------------------------------------------------------- conversion


def test_conversion_keeps_the_checkpoints_text_encoder(official_and_ours):
    """Official text-encoder weights differ from CLIP's (mmcv's min_lr trains them): every one
    arrives unchanged in our model."""
    official, ours = official_and_ours("resnet", WHOLE)
    ours_state = ours.state_dict()
    text = {k: v for k, v in official.state_dict().items() if k.startswith("text_encoder.")}
    assert len(text) > 10
    for key, value in text.items():
        assert torch.equal(ours_state[TEXT_PREFIX + key[len("text_encoder.") :]], value), key


def test_keys_no_rule_maps_are_an_error_listing_them(official_and_ours):
    official, _ = official_and_ours("resnet", WHOLE)
    state_dict = dict(official.state_dict())
    state_dict["auxiliary_head.conv_seg.weight"] = torch.zeros(1)
    state_dict["neck.extra.weight"] = torch.zeros(1)
    with pytest.raises(OfficialCheckpointError) as error:
        convert_official_state_dict(state_dict, source="release.pth")
    message = str(error.value)
    assert message.startswith("release.pth: keys that no Semantic FPN (mmseg) rule maps")
    assert "auxiliary_head.conv_seg.weight" in message and "neck.extra.weight" in message


def test_a_checkpoint_of_unknown_architecture_is_an_error():
    with pytest.raises(OfficialCheckpointError, match=r"\['backbone', 'cls_head'\]"):
        convert_official_state_dict({"backbone.w": torch.zeros(1), "cls_head.w": torch.zeros(1)})


def test_a_file_that_is_not_an_mmcv_checkpoint_is_an_error(tmp_path):
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": {"w": torch.zeros(1)}}, path)
    with pytest.raises(OfficialCheckpointError, match=r"model_final.pth: .*'state_dict'.*'model'"):
        load_official_checkpoint(path)


def test_a_checkpoint_for_another_config_lists_missing_unexpected_and_mismatched_keys(
    official_and_ours,
):
    official, ours = official_and_ours("resnet", WHOLE)
    converted = convert_official_state_dict(official.state_dict()).state_dict
    del converted["backbone.bottom_up.gamma"]
    converted["backbone.fpn_lateral6.weight"] = torch.zeros(1)
    converted["sem_seg_head.predictor.bias"] = torch.zeros(K + 1)
    with pytest.raises(OfficialCheckpointError) as error:
        check_matches_model(converted, ours.state_dict(), "a.pth", "b.py")
    message = str(error.value)
    assert message.startswith("a.pth does not fit b.py")
    assert "model keys missing from the checkpoint (1):\n  backbone.bottom_up.gamma" in message
    assert "checkpoint keys the model does not have (1):\n  backbone.fpn_lateral6.weight" in message
    assert f"sem_seg_head.predictor.bias: checkpoint ({K + 1},), model ({K},)" in message


def test_class_names_must_be_the_checkpoints(official_and_ours):
    _, ours = official_and_ours("resnet", WHOLE)
    check_class_names(CLASS_NAMES, ours)
    check_class_names(None, ours)
    with pytest.raises(
        OfficialCheckpointError, match="at index 2 the model has 'sky', the checkpoint 'sea'"
    ):
        check_class_names(("cat", "dog", "sea", "grass"), ours)


# ----------------------------------------------------------------------------- the tool


def load_tool():
    path = os.path.join(REPO_ROOT, "tools", "convert_official_checkpoint.py")
    spec = importlib.util.spec_from_file_location("convert_official_checkpoint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_config_checkpoint(tmp_path):
    """An official-format checkpoint for configs/Synthetic/denseclip_fpn_tiny.py as it is."""
    from denseclip.data import SYNTHETIC_CLASSES

    sizes = Sizes(
        width=16,
        embed=64,
        resolution=128,
        text_width=64,
        decoder_layers=1,
        fpn_channels=64,
        head_channels=32,
    )
    official = build_official("resnet", sizes, SYNTHETIC_CLASSES, WHOLE)
    return save_official_checkpoint(official, tmp_path / "official.pth", SYNTHETIC_CLASSES)


def test_tool_converts_a_checkpoint_that_loads_into_the_config(
    tmp_path, tiny_config_checkpoint, capsys
):
    dst = str(tmp_path / "out" / "converted.pth")
    load_tool().main([tiny_config_checkpoint, dst, "--config", TINY_CONFIG_PATH])
    assert f"loads strictly into {TINY_CONFIG_PATH}" in capsys.readouterr().out
    model = instantiate(LazyConfig.load(TINY_CONFIG_PATH).model)
    DenseCLIPCheckpointer(model).load(dst)
    official = torch.load(tiny_config_checkpoint)["state_dict"]
    assert torch.equal(model.backbone.bottom_up.prompts.contexts, official["contexts"])


def test_tool_exits_with_the_error_when_the_config_does_not_match(tmp_path, tiny_config_checkpoint):
    dst = str(tmp_path / "converted.pth")
    with pytest.raises(SystemExit, match="does not fit"):
        load_tool().main(
            [
                tiny_config_checkpoint,
                dst,
                "--config",
                TINY_CONFIG_PATH,
                "model.backbone.out_channels=32",
            ]
        )
    assert not os.path.exists(dst)


# ----------------------------------------------------------------------------- full size


FULL_SIZE = [
    ("denseclip_fpn_res50_512x512_80k", "resnet", RN50),
    ("denseclip_fpn_res101_512x512_80k", "resnet", RN101),
    ("denseclip_fpn_vit-b_640x640_80k", "vit", VIT_B),
    ("fpn_clipres50_512x512_80k", "resnet_baseline", RN50),
]


@pytest.mark.parametrize("config, kind, sizes", FULL_SIZE, ids=[c for c, _, _ in FULL_SIZE])
def test_full_size_official_checkpoint_loads_strictly_into_its_config(config, kind, sizes):
    """The official model's key names and shapes (built on the meta device, then filled with
    random values) convert to exactly our config's state dict."""
    test_cfg = {"mode": "slide", "crop_size": (512, 512), "stride": (341, 341)}
    with torch.device("meta"):
        official = build_official(kind, sizes, ADE20K_CLASSES, test_cfg).state_dict()
    generator = torch.Generator().manual_seed(0)
    state_dict = {
        k: (
            torch.randn(v.shape, generator=generator)
            if v.is_floating_point()
            else torch.zeros(v.shape, dtype=v.dtype)
        )
        for k, v in official.items()
    }
    converted = convert_official_state_dict(state_dict).state_dict
    model = instantiate(
        LazyConfig.load(os.path.join(REPO_ROOT, f"configs/ADE20K/{config}.py")).model
    )
    model.load_state_dict(converted, strict=True)
