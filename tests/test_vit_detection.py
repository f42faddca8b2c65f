"""Specification of DenseCLIP on a plain CLIP ViT for detection (ViTDet): the windowed CLIP ViT
encoder, its pyramid wiring, the tiny RetinaNet / Mask R-CNN configs, the COCO ViT-B/16 configs
and their recipe (layer-wise learning-rate decay), FLOP counts.

References are independent of the code under test: OpenAI's own ``VisionTransformer`` (global
attention, CLIP's semantics) and attention written out window by window here.
"""

import json
import os

import pytest
import torch
import torch.nn.functional as F
from clip import model as openai
from fvcore.nn import FlopCountAnalysis

from detectron2.config import LazyConfig, instantiate
from detectron2.modeling.backbone.utils import window_partition, window_unpartition
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from helpers import (
    REPO_ROOT,
    eval_results,
    free_port,
    load_python_file,
    run_train_net,
    tiny_openai_clip_vit,
    tiny_overrides,
)

from denseclip.checkpoint import (
    IMAGE_ENCODER_PREFIX,
    TEXT_ENCODER_PREFIX,
    DenseCLIPCheckpointer,
    convert_openai_clip,
)
from denseclip.clip import CLIPViTDet
from denseclip.clip.vitdet import WindowedAttentionBlock, window_attention, window_padding_mask
from denseclip.data import write_synthetic_detection
from denseclip.analysis.flops import ATTENTION_HANDLES
from denseclip.meta_arch import SymmetricClampBox2BoxTransform
from denseclip.pyramids import SimpleFeaturePyramidWithSideOutputs
from denseclip.solver import clip_vit_lr_decay_rate

pytestmark = pytest.mark.usefixtures("single_torch_thread")

ATOL = 1e-5
TINY_RETINANET = "retinanet_denseclip_vit_tiny"
TINY_MASK_RCNN = "mask_rcnn_denseclip_vit_tiny"
COCO_MASK_RCNN = "configs/COCO/mask_rcnn_denseclip_vit-b_sfp_100ep_coco.py"
COCO_CONFIGS = [
    "configs/COCO/retinanet_denseclip_vit-b_sfp_100ep_coco.py",
    "configs/COCO/retinanet_clip_vit-b_sfp_100ep_coco.py",
    COCO_MASK_RCNN,
    "configs/COCO/mask_rcnn_clip_vit-b_sfp_100ep_coco.py",
]
NUM_TINY_CLASSES = 3  # the synthetic shapes


def _encoder(seed=0, **kwargs):
    """A tiny CLIPViTDet: width 32, 2 heads, 3 blocks (0 and 2 in 2×2 windows), 16×16 patches,
    stored grid 4×4."""
    torch.manual_seed(seed)
    args = dict(input_resolution=64, width=32, layers=3, heads=2, output_dim=16, drop_path_rate=0)
    args.update(window_size=2, window_block_indexes=[0, 2])
    args.update(kwargs)
    return CLIPViTDet(**args).eval()


def _openai_vit(seed=0, input_resolution=64, width=32, layers=3, heads=2, output_dim=16):
    torch.manual_seed(seed)
    return openai.VisionTransformer(input_resolution, 16, width, layers, heads, output_dim).eval()


def _openai_outputs(reference, images):
    """OpenAI's (z̄, patch tokens of the last block) for ``images``."""
    captured = []
    hook = reference.transformer.register_forward_hook(lambda m, a, out: captured.append(out))
    with torch.no_grad():
        global_embedding = reference(images)
    hook.remove()
    return global_embedding, captured[0][1:].transpose(0, 1)  # B×hw×D


# ----------------------------------------------------------------------------- encoder


@pytest.mark.parametrize(
    "window_size, window_block_indexes",
    [(0, []), (4, [0, 1, 2]), (6, [0, 1, 2]), (4, [1])],
    ids=["global", "window-equals-grid", "window-larger-than-grid", "one-windowed-block"],
)
def test_encoder_is_openai_clip_when_windows_cover_the_grid(window_size, window_block_indexes):
    """On CLIP's own grid (4×4 here) with one window covering it, windowed attention is global
    attention: z̄ is OpenAI's image embedding, z its ln_post + proj of the patch tokens, and
    ``last_feat`` the last block's patch tokens."""
    reference = _openai_vit()
    ours = _encoder(window_size=window_size, window_block_indexes=window_block_indexes)
    ours.load_state_dict(reference.state_dict(), strict=True)
    images = torch.randn(2, 3, 64, 64)
    expected_global, patches = _openai_outputs(reference, images)
    with torch.no_grad():
        outputs = ours(images)
    torch.testing.assert_close(outputs["global_embedding"], expected_global, atol=ATOL, rtol=0)
    dense = (reference.ln_post(patches) @ reference.proj).transpose(1, 2).reshape(2, 16, 4, 4)
    torch.testing.assert_close(outputs["dense_embedding"], dense, atol=ATOL, rtol=0)
    features = patches.transpose(1, 2).reshape(2, 32, 4, 4)
    torch.testing.assert_close(outputs["last_feat"], features, atol=ATOL, rtol=0)


def test_positional_embedding_is_resized_bicubically_to_the_image_grid():
    """A 48×80 image has a 3×5 grid: the stored 4×4 grid is resized bicubically
    (align_corners=False), the class row is kept."""
    reference = _openai_vit()
    ours = _encoder(window_block_indexes=[])
    ours.load_state_dict(reference.state_dict(), strict=True)
    pos = reference.positional_embedding.data
    grid = pos[1:].reshape(4, 4, -1).permute(2, 0, 1)[None]
    grid = F.interpolate(grid, size=(3, 5), mode="bicubic", align_corners=False)
    reference.positional_embedding.data = torch.cat([pos[:1], grid[0].flatten(1).t()])
    images = torch.randn(2, 3, 48, 80)
    expected, _ = _openai_outputs(reference, images)
    with torch.no_grad():
        outputs = ours(images)
    assert outputs["dense_embedding"].shape == (2, 16, 3, 5)
    torch.testing.assert_close(outputs["global_embedding"], expected, atol=ATOL, rtol=0)


def test_encoder_declares_one_stride_16_map_and_its_embeddings():
    encoder = _encoder()
    assert encoder.stage_channels == {"last_feat": 32}
    assert encoder.stage_strides == {"last_feat": 16}
    assert encoder.dense_embedding_stride == 16 and encoder.embed_dim == 16
    baseline = _encoder(with_embeddings=False)
    assert baseline.embed_dim is None
    assert not any(k.startswith(("ln_post", "proj")) for k in baseline.state_dict())
    with torch.no_grad():
        assert sorted(baseline(torch.randn(1, 3, 32, 48))) == ["last_feat"]


def test_default_windows_are_vitdet_vit_b():
    blocks = CLIPViTDet(width=32, heads=2, output_dim=16).transformer.resblocks
    assert [block.window_size for block in blocks] == [14, 14, 0, 14, 14, 0, 14, 14, 0, 14, 14, 0]
    assert blocks[-1].drop_path.p == pytest.approx(0.1)


def test_window_blocks_must_exist():
    with pytest.raises(ValueError, match=r"window_block_indexes \[3\]"):
        _encoder(window_block_indexes=[0, 3])


# ----------------------------------------------------------------------------- windows


def test_window_partition_pads_and_unpartition_restores_a_grid_of_any_size():
    """detectron2's partition of a 5×7 grid into 3×3 windows pads it to 6×9: 2×3 windows."""
    x = torch.randn(2, 5, 7, 4)
    windows, padded = window_partition(x, 3)
    assert padded == (6, 9) and windows.shape == (2 * 6, 3, 3, 4)
    torch.testing.assert_close(windows[4, 1, 0], x[0, 4, 3])  # window (1, 1), cell (1, 0)
    assert torch.equal(window_unpartition(windows, 3, padded, (5, 7)), x)


def test_padding_mask_marks_the_cells_that_hold_a_patch():
    mask = window_padding_mask((5, 7), 3)
    assert mask.shape == (6, 9) and mask.sum() == 5 * 7
    # the bottom-right window holds rows 3..4 of column 6 only
    assert mask[5].reshape(3, 3).tolist() == [[True, False, False]] * 2 + [[False] * 3]


def _per_window_reference(q, k, v, grid, window_size):
    """Attention written out window by window: the class token over everything, each patch over
    the class token and the patches of its window (rows and columns by integer division)."""
    height, width = grid
    out = torch.empty_like(q)
    scale = q.shape[-1] ** -0.5
    out[:, :, :1] = ((q[:, :, :1] @ k.transpose(-1, -2)) * scale).softmax(-1) @ v
    for row in range(height):
        for col in range(width):
            keys = [0] + [
                1 + r * width + c
                for r in range(height)
                for c in range(width)
                if (r // window_size, c // window_size) == (row // window_size, col // window_size)
            ]
            index = 1 + row * width + col
            logits = (q[:, :, index : index + 1] @ k[:, :, keys].transpose(-1, -2)) * scale
            out[:, :, index : index + 1] = logits.softmax(-1) @ v[:, :, keys]
    return out


@pytest.mark.parametrize("grid, window_size", [((5, 7), 3), ((4, 4), 2), ((2, 3), 4)])
def test_window_attention_is_attention_within_windows_plus_the_class_token(grid, window_size):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 1 + grid[0] * grid[1], 8) for _ in range(3))
    expected = _per_window_reference(q, k, v, grid, window_size)
    torch.testing.assert_close(window_attention(q, k, v, grid, window_size), expected)


def test_windowed_block_mixes_windows_only_through_the_class_token():
    torch.manual_seed(0)
    block = WindowedAttentionBlock(16, 2, window_size=3).eval()
    grid = (5, 7)
    x = torch.randn(1, 1 + 35, 16)
    changed = x.clone()
    changed[0, 1 + 0] += torch.randn(16)  # the patch at (0, 0): window (0, 0)
    with torch.no_grad():
        delta = (block(changed, grid) - block(x, grid)).abs().amax(-1)[0]
    in_window = torch.zeros(5, 7, dtype=torch.bool)
    in_window[:3, :3] = True
    assert delta[0] > 0  # the class token sees every patch
    assert (delta[1:][in_window.flatten()] > 0).all()
    assert (delta[1:][~in_window.flatten()] == 0).all()


# ----------------------------------------------------------------------------- checkpointing


def test_activation_checkpointing_recomputes_blocks_and_keeps_the_gradients():
    images = torch.randn(2, 3, 64, 80)
    gradients, calls = {}, {}
    for flag in (False, True):
        encoder = _encoder(use_act_checkpoint=flag, window_size=2, window_block_indexes=[0, 2])
        encoder.train()
        count = [0]
        block = encoder.transformer.resblocks[1]
        # a pre-hook: recomputation stops as soon as the saved tensors are back, before the end
        block.register_forward_pre_hook(lambda *args: count.__setitem__(0, count[0] + 1))
        outputs = encoder(images)
        (outputs["last_feat"].square().mean() + outputs["global_embedding"].sum()).backward()
        gradients[flag] = {n: p.grad.clone() for n, p in encoder.named_parameters()}
        calls[flag] = count[0]
    assert calls == {False: 1, True: 2}  # forward, and again in the backward pass
    for name, grad in gradients[False].items():
        torch.testing.assert_close(gradients[True][name], grad, msg=name)


# ----------------------------------------------------------------------------- FLOPs


def test_windowed_attention_flops_are_counted_window_by_window():
    """96×96 image: a 6×6 grid; 4×4 windows pad it to 8×8, 4 windows of 16 cells. fvcore (with
    ``ATTENTION_HANDLES``) counts Q·Kᵀ and softmax·V: 2·L·S·d multiply-adds per head."""
    width, hw, windows, cells = 32, 36, 4, 16
    global_block = 2 * (1 + hw) * (1 + hw) * width
    windowed_block = 2 * (1 * (1 + hw) + windows * cells * (1 + cells)) * width
    for indexes, expected in (([], 3 * global_block), ([0, 2], 2 * windowed_block + global_block)):
        encoder = _encoder(window_size=4, window_block_indexes=indexes)
        analysis = FlopCountAnalysis(encoder, (torch.zeros(1, 3, 96, 96),))
        analysis.set_op_handle(**ATTENTION_HANDLES).unsupported_ops_warnings(False)
        assert analysis.by_operator()["scaled_dot_product_attention"] == expected


def test_get_flops_counts_the_tiny_vit_detector(tiny_detectors, capsys):
    """tools/get_flops.py runs on a ViT detector and leaves the text encoder's parameters out."""
    _, model = tiny_detectors[TINY_RETINANET]
    tool = load_python_file("tools/get_flops.py")
    path = os.path.join(REPO_ROOT, "configs", "Synthetic", f"{TINY_RETINANET}.py")
    tool.main(["--config-file", path, "--shape", "96", "160"])
    printed = capsys.readouterr().out
    params = sum(p.numel() for n, p in model.named_parameters() if TEXT_ENCODER_PREFIX not in n)
    summary = json.loads(printed.strip().splitlines()[-1])
    assert summary["params_m"] == round(params / 1e6, 3) and summary["gflops"] > 0


def test_benchmark_times_and_measures_a_vit_detector(capsys):
    """tools/benchmark.py on detection configs: inference latency, a training step, and (the
    measurement ``--train-memory`` runs in a fresh process) the peak memory of a training
    forward + backward of a Mask R-CNN with random boxes and masks."""
    tool = load_python_file("tools/benchmark.py")
    config_dir = os.path.join(REPO_ROOT, "configs", "Synthetic")
    common = ["--variants", "denseclip", "--size", "96", "--threads", "1"]
    report = tool.main(
        ["--config-file", os.path.join(config_dir, f"{TINY_RETINANET}.py"), *common]
        + ["--repeats", "1", "--warmup", "0", "--train-repeats", "1", "--no-memory"]
    )
    assert set(report["latency_ms"]) == set(report["train_step_ms"]) == {"denseclip"}
    tool.main(
        ["--config-file", os.path.join(config_dir, f"{TINY_MASK_RCNN}.py"), *common]
        + ["--train-memory-of", "denseclip"]
    )
    memory = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert memory["train_peak_mb"] > 0 and memory["model_mb"] > 0


# ----------------------------------------------------------------------------- tiny detectors


def _instances(height, width, with_masks):
    """Two boxes of classes 0 and 2 (and their box-shaped masks)."""
    boxes = torch.tensor([[8.0, 10, 50, 40], [30, 4, min(90, width - 1), min(70, height - 1)]])
    instances = Instances((height, width))
    instances.gt_boxes = Boxes(boxes)
    instances.gt_classes = torch.tensor([0, 2])
    if with_masks:
        masks = torch.zeros(2, height, width, dtype=torch.bool)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.long().tolist()):
            mask[y1:y2, x1:x2] = True
        instances.gt_masks = BitMasks(masks)
    return instances


def _batch(sizes, with_masks):
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (3, h, w), generator=generator, dtype=torch.uint8),
            "instances": _instances(h, w, with_masks),
            "height": h,
            "width": w,
        }
        for h, w in sizes
    ]


@pytest.fixture(scope="module")
def tiny_detectors(load_tiny_config):
    """{name: (config, model)} of the tiny ViT RetinaNet and Mask R-CNN."""
    built = {}
    for name in (TINY_RETINANET, TINY_MASK_RCNN):
        cfg = load_tiny_config(name)
        torch.manual_seed(0)
        built[name] = (cfg, instantiate(cfg.model))
    return built


def _losses(model, batch):
    model.train()
    model.__dict__.pop("loss_normalizer", None)
    torch.manual_seed(1)
    with EventStorage():
        return model(batch)


def test_score_channels_join_the_stride_16_map_before_the_simple_feature_pyramid(tiny_detectors):
    _, model = tiny_detectors[TINY_RETINANET]
    pyramid = model.backbone
    assert isinstance(pyramid, SimpleFeaturePyramidWithSideOutputs)
    assert pyramid.bottom_up.output_shape()["last_feat"].channels == 64 + NUM_TINY_CLASSES
    assert pyramid.simfp_4[0].in_channels == 64 + NUM_TINY_CLASSES  # scale 1: the 1×1 conv
    with torch.no_grad():
        features = pyramid(torch.randn(1, 3, 96, 128))
    assert sorted(features) == ["p3", "p4", "p5", "p6", "p7", "score_map", "text_embeddings"]
    assert features["score_map"].shape == (1, NUM_TINY_CLASSES, 6, 8)  # stride 16
    assert features["p3"].shape[-2:] == (12, 16) and features["p7"].shape[-2:] == (1, 1)


def test_pyramid_is_registered_as_bottom_up_and_pads_batches_to_multiples_of_32(tiny_detectors):
    _, model = tiny_detectors[TINY_MASK_RCNN]
    assert model.backbone.net is model.backbone.bottom_up
    names = [n for n, _ in model.named_parameters() if n.startswith("backbone.")]
    assert all(n.startswith(("backbone.bottom_up.", "backbone.simfp_")) for n in names), names
    assert any(n.startswith(IMAGE_ENCODER_PREFIX) for n in names)
    assert model.backbone.size_divisibility == 32
    batch = model.preprocess_image([{"image": torch.zeros(3, 90, 150)}])
    assert batch.tensor.shape[-2:] == (96, 160)


@pytest.mark.parametrize("name", [TINY_RETINANET, TINY_MASK_RCNN])
def test_aux_loss_gradient_reaches_the_contexts_from_the_stride_16_score_map(tiny_detectors, name):
    _, model = tiny_detectors[name]
    model.zero_grad(set_to_none=True)
    losses = _losses(model, _batch([(96, 128)], with_masks=name == TINY_MASK_RCNN))
    losses["loss_aux_box_seg"].backward()
    bottom_up = model.backbone.bottom_up
    for part in (bottom_up.prompts.contexts, bottom_up.gamma, bottom_up.image_encoder.proj):
        assert part.grad is not None and part.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("name", [TINY_RETINANET, TINY_MASK_RCNN])
def test_tiny_detectors_take_images_of_any_size_without_config_edits(tiny_detectors, name):
    _, model = tiny_detectors[name]
    masks = name == TINY_MASK_RCNN
    losses = _losses(model, _batch([(90, 150), (160, 160)], with_masks=masks))
    assert all(torch.isfinite(v) for v in losses.values()), losses
    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": torch.zeros(3, 480, 640, dtype=torch.uint8)}])
    assert output["instances"].image_size == (480, 640)


def test_the_tiny_configs_train_the_text_side_and_freeze_the_text_encoder(tiny_detectors):
    cfg, model = tiny_detectors[TINY_RETINANET]
    cfg = cfg.copy()
    cfg.optimizer.params.model = model
    trained = {id(p) for group in instantiate(cfg.optimizer).param_groups for p in group["params"]}
    for name, param in model.named_parameters():
        assert (id(param) in trained) == (not name.startswith(TEXT_ENCODER_PREFIX)), name


def test_openai_vit_weights_load_into_every_image_encoder_tensor(load_tiny_config, tmp_path):
    """A converted OpenAI ViT CLIP file fills every tensor of the image and text encoders and
    nothing is left over; the loaded encoder gives OpenAI's image embedding."""
    torch.manual_seed(0)
    # the tiny ViT config's sizes
    source = tiny_openai_clip_vit(embed_dim=64, image_resolution=128, vision_layers=4)
    converted, report = convert_openai_clip(source.state_dict())
    assert report.skipped == ["logit_scale"]
    torch.save({"model": converted}, tmp_path / "clip.pth")
    cfg = load_tiny_config(TINY_RETINANET)
    cfg.model.backbone.bottom_up.image_encoder.update(heads=1, window_block_indexes=[])
    model = instantiate(cfg.model)

    checkpointer = DenseCLIPCheckpointer(model)
    incompatible = []
    checkpointer._log_incompatible_keys = incompatible.append
    checkpointer.load(str(tmp_path / "clip.pth"))
    (keys,) = incompatible
    assert keys.unexpected_keys == [] and keys.incorrect_shapes == []
    encoders = (IMAGE_ENCODER_PREFIX, TEXT_ENCODER_PREFIX)
    assert not [k for k in keys.missing_keys if k.startswith(encoders)]
    image_keys = {k for k in model.state_dict() if k.startswith(IMAGE_ENCODER_PREFIX)}
    assert image_keys == {k for k in converted if k.startswith(IMAGE_ENCODER_PREFIX)}

    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        outputs = model.backbone.bottom_up.image_encoder.eval()(images)
        expected = source.encode_image(images)
    torch.testing.assert_close(outputs["global_embedding"], expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- train_net


@pytest.mark.timeout(600)
def test_two_process_ddp_trains_the_tiny_vit_mask_rcnn_on_a_160px_folder(tmp_path):
    """The tiny ViT Mask R-CNN on a COCO-layout folder of 160×160 images (the synthetic shapes
    at another size), 2 CPU processes with DDP: every parameter gets a gradient (DDP would stop
    at the second iteration otherwise), and COCO box and mask AP are written."""
    # one training image per process, one validation image
    root = write_synthetic_detection(str(tmp_path / "shapes"), 2, 1, image_size=(160, 160))
    out = str(tmp_path / "out")
    for attempt in range(2):  # the free port may be taken between probing and binding
        run = run_train_net(
            [
                "--config-file",
                f"configs/Synthetic/{TINY_MASK_RCNN}.py",
                "--num-gpus",
                "2",
                "--dist-url",
                f"tcp://127.0.0.1:{free_port()}",
                "--dataset",
                f"shapes160={root}",
                "dataloader.train.dataset.names=shapes160_train",
                "dataloader.test.dataset.names=shapes160_val",
                "model.roi_heads.box_predictor.test_score_thresh=0.001",
                *tiny_overrides(out, max_iter=2),
            ],
            tmp_path / "datasets",
        )
        if run.returncode == 0 or "address already in use" not in run.output.lower():
            break
    assert run.returncode == 0, run.describe()
    assert "World size: 2" in run.output, run.describe()
    results = eval_results(out)
    assert results is not None and sorted(results) == ["bbox", "segm"], run.describe()


# ----------------------------------------------------------------------------- recipe


@pytest.mark.parametrize(
    "name, depth",
    [
        ("backbone.bottom_up.image_encoder.conv1.weight", 0),
        ("backbone.bottom_up.image_encoder.positional_embedding", 0),
        ("backbone.bottom_up.image_encoder.class_embedding", 0),
        ("backbone.bottom_up.image_encoder.ln_pre.bias", 0),
        ("backbone.bottom_up.image_encoder.transformer.resblocks.0.attn.in_proj_weight", 1),
        ("backbone.bottom_up.image_encoder.transformer.resblocks.11.mlp.c_fc.bias", 12),
        ("backbone.bottom_up.image_encoder.ln_post.weight", 13),
        ("backbone.bottom_up.image_encoder.proj", 13),
        ("backbone.bottom_up.prompts.text_encoder.transformer.resblocks.0.ln_1.weight", 13),
        ("backbone.bottom_up.prompts.contexts", 13),
        ("backbone.simfp_2.0.weight", 13),
        ("roi_heads.box_predictor.cls_score.weight", 13),
    ],
)
def test_layer_wise_decay_follows_the_depth_of_the_clip_vit(name, depth):
    assert clip_vit_lr_decay_rate(name, 0.7, 12) == pytest.approx(0.7 ** (13 - depth))


@pytest.fixture(scope="module")
def coco_configs():
    """{path: LazyConfig} of the four COCO ViT-B/16 configs, each parsed once."""
    import denseclip.data  # noqa: F401  (the COCO class prompts)

    return {path: LazyConfig.load(os.path.join(REPO_ROOT, path)) for path in COCO_CONFIGS}


@pytest.fixture(scope="module")
def coco_mask_rcnn(coco_configs):
    """(config, model) of the COCO DenseCLIP ViT-B/16 Mask R-CNN; the model at toy widths (the
    same modules and parameter names: 12 blocks, the heads at full size)."""
    cfg = coco_configs[COCO_MASK_RCNN]
    small = cfg.model.copy()
    bottom_up = small.backbone.bottom_up
    bottom_up.image_encoder.update(width=64, heads=1, output_dim=64)
    bottom_up.prompts.text_encoder.update(width=64, heads=1, layers=1, embed_dim=64)
    return cfg, instantiate(small)


def test_coco_vit_model_is_vitdet_b_over_the_clip_vit(coco_mask_rcnn):
    cfg, model = coco_mask_rcnn
    vit = cfg.model.backbone.bottom_up.image_encoder
    assert (vit.input_resolution, vit.patch_size, vit.width, vit.layers) == (224, 16, 768, 12)
    assert vit.output_dim == cfg.model.backbone.bottom_up.prompts.text_encoder.embed_dim == 512
    encoder = model.backbone.bottom_up.image_encoder
    assert isinstance(encoder, CLIPViTDet) and encoder.positional_embedding.shape[0] == 197
    assert [b.window_size for b in encoder.transformer.resblocks] == [14, 14, 0] * 4
    assert encoder.transformer.resblocks[-1].drop_path.p == pytest.approx(0.1)
    assert not encoder.use_act_checkpoint
    assert model.backbone.padding_constraints == {"size_divisibility": 32, "square_size": 1024}
    assert model.backbone.bottom_up.output_shape()["last_feat"].channels == 64 + 80
    assert model.backbone.bottom_up.score_scale == pytest.approx(1 / 0.07)
    assert list(model.backbone.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]


@pytest.mark.parametrize("path", COCO_CONFIGS, ids=lambda p: os.path.basename(p)[:-3])
def test_coco_vit_configs_pair_denseclip_with_its_baseline(coco_configs, path):
    """The baselines are the same detectors without the text side: no text encoder, no
    ``ln_post``/``proj``, a stride-16 map of 768 channels."""
    cfg = coco_configs[path]
    bottom_up = cfg.model.backbone.bottom_up
    denseclip = "denseclip" in os.path.basename(path)
    assert ("prompts" in bottom_up) == denseclip
    assert bottom_up.image_encoder.get("with_embeddings", True) == denseclip
    stock = cfg.model._target_.__name__ in ("RetinaNet", "GeneralizedRCNN")
    assert stock != denseclip
    assert cfg.train.max_iter == 184375


def test_vit_detectors_infer_as_detectron2s_vitdet_not_as_mmdet(coco_configs, load_tiny_config):
    """ViTDet's recipe is detectron2's: in the COCO ViT configs and the tiny ones none of
    mmdet's inference switches is set (their defaults are detectron2's behaviour) and boxes
    decode with detectron2's Box2BoxTransform; the ResNet configs keep mmdet's inference."""
    resnet = load_tiny_config("retinanet_denseclip_tiny").model
    assert resnet.candidate_selection == "mmdet"
    assert resnet.box2box_transform._target_ is SymmetricClampBox2BoxTransform
    tiny = [load_tiny_config(name).model for name in (TINY_RETINANET, TINY_MASK_RCNN)]
    switches = {"candidate_selection", "clip_boxes_before_nms", "drop_empty_boxes"}
    box_transforms = load_python_file("configs/common/models/mmdet_inference.py").box_transforms
    for model in [cfg.model for cfg in coco_configs.values()] + tiny:
        assert not switches & set(model)
        assert all(t._target_ is Box2BoxTransform for t in box_transforms(model))
