"""Tests that kill the mutants the rest of the suite let survive (tools/mutation_test.py).

Each test pins one behaviour of the numeric core that no other test distinguishes from a small
change of the code (docs/mutation_testing.md lists the mutants).
"""

import math
import os

import pytest
import torch
import torch.nn.functional as F
from clip import model as openai_clip
from torch import nn

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import Conv2d as D2Conv2d
from detectron2.modeling.meta_arch.semantic_seg import SemSegFPNHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from helpers import REPO_ROOT
from test_clip_encoders import randomize_batch_norms
from test_losses_and_head import FPN_CHANNELS, PYRAMID, make_head
from test_semantic_segmentor import random_inputs

from denseclip.clip import (
    CLIPTextEncoder,
    CLIPVisionTransformer,
    CLIPViTDet,
    tokenize_class_names,
)
from denseclip.clip.resnet import AttentionPool2d, Bottleneck, CLIPResNet
from denseclip.clip.vitdet import WindowedAttentionBlock
from denseclip.inference.fuse import fold_batch_norms
from denseclip.losses import box_seg_aux_loss, semantic_cross_entropy
from denseclip.meta_arch.semantic_segmentor import slide_logits, sliding_windows
from denseclip.prompting import ClassTextPrompts, ContextDecoder, score_maps
from denseclip.solver import (
    AdamWWithGradClip,
    PolyLRWithWarmup,
    clip_vit_lr_decay_rate,
    layer_decay_param_groups,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# ----------------------------------------------------------------------------- losses.py


def test_valid_pixels_loss_of_a_single_valid_pixel_is_its_cross_entropy():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.5, 1.0]]]])  # 1×2×1×2
    targets = torch.tensor([[[1, 255]]])
    loss = semantic_cross_entropy(logits, targets, reduction="valid_pixels")
    expected = math.log(math.exp(2.0) + math.exp(0.5)) - 0.5
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_box_loss_of_a_single_covered_cell_of_one_class_is_its_bce():
    # A 4×4 px box covers one stride-4 cell; with one class the mean runs over that cell only.
    logits = torch.tensor([[[[0.3, -1.0], [2.0, 0.5]]]])  # 1×1×2×2 at stride 4 of an 8×8 batch
    loss = box_seg_aux_loss(
        logits, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [torch.tensor([0])], (8, 8)
    )
    expected = F.binary_cross_entropy_with_logits(torch.tensor(0.3), torch.tensor(1.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------- solver.py


def test_clip_vit_lr_decay_defaults_to_no_decay_over_12_blocks():
    assert clip_vit_lr_decay_rate("image_encoder.conv1.weight") == 1.0
    block_0 = "image_encoder.transformer.resblocks.0.attn.in_proj_weight"
    assert clip_vit_lr_decay_rate(block_0, 0.5) == pytest.approx(0.5**12)


def test_layer_decay_groups_default_to_no_weight_decay_on_norms():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    groups = layer_decay_param_groups(
        model, base_lr=1.0, weight_decay=0.05, lr_decay_rate=0.7, num_layers=12
    )
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model[1].weight)] == 0.0
    assert decay_of[id(model[0].weight)] == 0.05


def test_poly_schedule_defaults_are_mmcvs_power_min_lr_and_warmup_ratio():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = PolyLRWithWarmup(optimizer, max_iter=10, warmup_iters=4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 1e-6, rel=1e-9)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    expected = (0.1 - 1e-6) * 0.5**0.9 + 1e-6
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9)


def test_gradient_clipping_defaults_to_the_l2_norm():
    param = nn.Parameter(torch.zeros(2))
    param.grad = torch.tensor([3.0, 4.0])
    AdamWWithGradClip([param], lr=0.0, max_norm=1.0).step()
    torch.testing.assert_close(param.grad, torch.tensor([0.6, 0.8]))


def test_layer_decay_groups_apply_the_overrides():
    model = nn.Sequential(nn.Linear(2, 2))
    groups = layer_decay_param_groups(
        model,
        base_lr=1.0,
        weight_decay=0.05,
        lr_decay_rate=0.7,
        num_layers=12,
        overrides={"bias": {"weight_decay": 0.0}},
    )
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert decay_of[id(model[0].bias)] == 0.0
    assert decay_of[id(model[0].weight)] == 0.05


# ----------------------------------------------------------------------------- inference/fuse.py


def _eval_batch_norm(channels):
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    return norm


@pytest.mark.parametrize("activation, folded", [(None, 1), (torch.relu, 0)])
def test_a_batch_norm_after_a_detectron2_conv_folds_only_without_its_activation(activation, folded):
    torch.manual_seed(0)
    model = nn.Sequential(D2Conv2d(2, 3, 3, padding=1, activation=activation), _eval_batch_norm(3))
    model.eval()
    x = torch.randn(1, 2, 5, 5)
    expected = model(x)
    assert fold_batch_norms(model) == folded
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_only_conv_then_batch_norm_pairs_of_a_sequential_fold():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 1), nn.ReLU(), _eval_batch_norm(3), nn.Conv2d(3, 3, 1), _eval_batch_norm(3)
    )
    model.eval()
    x = torch.randn(1, 2, 4, 4)
    expected = model(x)
    assert fold_batch_norms(model) == 1
    assert isinstance(model[2], nn.BatchNorm2d) and isinstance(model[4], nn.Identity)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- sem_seg_head.py


def test_head_rejects_an_unknown_loss_reduction_when_built():
    with pytest.raises(ValueError, match="loss reduction"):
        make_head(loss_reduction="mean")


def test_head_layers_equal_detectron2s_on_sides_that_are_multiples_of_32():
    head = make_head().eval()
    features = {
        f: torch.randn(
            2, FPN_CHANNELS, 64 // s, 96 // s, generator=torch.Generator().manual_seed(0)
        )
        for f, s in PYRAMID.items()
    }
    torch.testing.assert_close(head.layers(features), SemSegFPNHead.layers(head, features))


def test_head_resizes_each_level_bilinearly_to_the_finest_one_on_other_sides():
    head = make_head().eval()
    generator = torch.Generator().manual_seed(0)
    features = {
        f: torch.randn(1, FPN_CHANNELS, -(-72 // s), -(-100 // s), generator=generator)
        for f, s in PYRAMID.items()
    }
    levels = [scale_head(features[f]) for f, scale_head in zip(head.in_features, head.scale_heads)]
    size = levels[0].shape[-2:]
    assert any(level.shape[-2:] != size for level in levels)
    total = sum(F.interpolate(x, size=size, mode="bilinear", align_corners=False) for x in levels)
    torch.testing.assert_close(head.layers(features), head.predictor(total))


# ----------------------------------------------------------------------------- meta_arch/box_seg_loss.py


def _tiny_detector(name, defaults=False):
    """The tiny detector of ``name``; ``defaults``: with the meta-architecture's own tau and
    aux_loss_weight instead of the config's."""
    cfg = LazyConfig.load(os.path.join(REPO_ROOT, "configs", "Synthetic", name))
    if defaults:
        del cfg.model.tau, cfg.model.aux_loss_weight
    torch.manual_seed(0)
    return instantiate(cfg.model)


def _detection_batch():
    generator = torch.Generator().manual_seed(0)
    instances = Instances((64, 64))
    instances.gt_boxes = Boxes(torch.tensor([[4.0, 8.0, 40.0, 36.0], [20.0, 16.0, 60.0, 60.0]]))
    instances.gt_classes = torch.tensor([0, 2])
    image = torch.randint(0, 256, (3, 64, 64), generator=generator).float()
    return [{"image": image, "instances": instances, "height": 64, "width": 64}]


@pytest.mark.parametrize("defaults", [False, True])
def test_detector_aux_loss_is_the_box_loss_of_the_score_map_over_tau_007_with_weight_1(defaults):
    model = _tiny_detector("retinanet_denseclip_tiny.py", defaults).train()
    captured = {}
    model.backbone.register_forward_hook(
        lambda module, inputs, outputs: captured.update(
            size=tuple(inputs[0].shape[-2:]), score_map=outputs["score_map"]
        )
    )
    batch = _detection_batch()
    with EventStorage():
        losses = model(batch)
    instances = batch[0]["instances"]
    expected = box_seg_aux_loss(
        captured["score_map"] / 0.07,
        [instances.gt_boxes.tensor],
        [instances.gt_classes],
        captured["size"],
    )
    torch.testing.assert_close(losses["loss_aux_box_seg"], expected)


def test_detector_without_score_maps_trains_without_aux_loss_and_keeps_no_score_map():
    baseline = _tiny_detector("retinanet_clip_tiny.py").train()
    with EventStorage():
        assert "loss_aux_box_seg" not in baseline(_detection_batch())
    model = _tiny_detector("retinanet_denseclip_tiny.py").eval()
    with torch.no_grad():
        model(_detection_batch())
    assert model._aux_inputs is None


# ----------------------------------------------------------------------------- prompting.py


def test_context_decoder_defaults_are_the_papers():
    decoder = ContextDecoder(visual_dim=8)
    assert decoder.text_proj[1].out_features == 256
    assert len(decoder.decoder) == 3
    layer = decoder.decoder[0]
    assert layer.self_attn.num_heads == 4 and layer.cross_attn.num_heads == 4
    assert layer.dropout.p == 0.1 and layer.self_attn.proj_drop.p == 0.1


def _text_encoder(context_length):
    torch.manual_seed(0)
    return CLIPTextEncoder(context_length=context_length, width=32, heads=2, layers=1, embed_dim=32)


def test_class_prompts_default_to_5_class_tokens_and_the_rest_contexts():
    prompts = ClassTextPrompts(_text_encoder(9), ["cat", "dog"])
    assert prompts.class_tokens.shape == (2, 5)
    assert prompts.contexts.shape == (1, 4, 32)


def test_class_prompts_may_have_no_contexts():
    prompts = ClassTextPrompts(_text_encoder(5), ["cat", "dog"]).eval()
    assert prompts.contexts.shape == (1, 0, 32)
    assert prompts().shape == (1, 2, 32)


def test_score_maps_of_one_class_use_each_images_own_text():
    generator = torch.Generator().manual_seed(0)
    dense = torch.randn(2, 4, 3, 3, generator=generator)
    text = torch.randn(2, 1, 4, generator=generator)
    maps = score_maps(dense, text)
    for b in range(2):
        expected = torch.einsum(
            "chw,c->hw", F.normalize(dense[b], dim=0), F.normalize(text[b, 0], dim=0)
        )
        torch.testing.assert_close(maps[b, 0], expected)


# ----------------------------------------------------------------------------- meta_arch/semantic_segmentor.py


def test_segmentor_rejects_an_unknown_aux_loss_reduction_when_built(tiny_config):
    tiny_config.model.aux_loss_reduction = "mean"
    with pytest.raises(ValueError, match="loss reduction"):
        instantiate(tiny_config.model)


@pytest.mark.parametrize("stride", [(2, 5), (5, 2), (0, 2), (2, 0)])
def test_sliding_windows_reject_a_stride_out_of_range_in_either_dimension(stride):
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(10, 10, (4, 4), stride)


def test_segmentor_defaults_are_the_official_recipes_and_take_one_window_at_a_time(tiny_config):
    for key in ("tau", "aux_loss_weight", "pad_windows", "slide_batch_size", "crop_size", "stride"):
        tiny_config.model.pop(key, None)
    model = instantiate(tiny_config.model)
    assert (model.tau, model.aux_loss_weight) == (0.07, 0.4)
    assert model.pad_windows is False and model.slide_batch_size == 8
    assert (model.crop_size, model.stride) == ((512, 512), (341, 341))
    tiny_config.model.slide_batch_size = 1
    assert instantiate(tiny_config.model).slide_batch_size == 1


@pytest.mark.parametrize(
    "height, width, crop", [(64, 160, 128), (160, 64, 128), (160, 160, 128), (64, 64, (96, 128))]
)
def test_training_labels_are_padded_to_the_crop_in_the_one_short_dimension(
    tiny_config, height, width, crop
):
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    tiny_config.model.crop_size = (crop_h, crop_w)
    model = instantiate(tiny_config.model).train()
    captured = {}
    model.sem_seg_head.register_forward_hook(
        lambda module, inputs, outputs: captured.update(targets=inputs[1])
    )
    model.backbone.register_forward_hook(
        lambda module, inputs, outputs: captured.update(images=inputs[0])
    )
    inputs = random_inputs(batch=1, height=height, width=width)
    model(inputs)
    targets, images = captured["targets"], captured["images"]
    assert targets.shape == (1, max(height, crop_h), max(width, crop_w))
    assert images.shape == (1, 3, *targets.shape[1:])
    torch.testing.assert_close(targets[0, :height, :width], inputs[0]["sem_seg"])
    assert (targets[0, height:] == 255).all() and (targets[0, :, width:] == 255).all()
    assert (images[0, :, height:] == 0).all() and (images[0, :, :, width:] == 0).all()


def test_sliding_windows_with_stride_1_are_mmsegs_grid():
    assert sliding_windows(4, 4, (4, 4), (1, 1)) == [(0, 4, 0, 4)]
    assert sliding_windows(5, 4, (4, 4), (1, 1)) == [(0, 4, 0, 4), (1, 5, 0, 4)]
    assert sliding_windows(4, 5, (4, 4), (1, 1)) == [(0, 4, 0, 4), (0, 4, 1, 5)]


def test_slide_logits_of_a_pointwise_model_are_its_logits_of_the_whole_image():
    image = torch.randn(1, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    logits = slide_logits(image, lambda x: 2 * x[:, :2], crop_size=(4, 4), stride=(2, 3))
    torch.testing.assert_close(logits, 2 * image[:, :2])


def test_slide_inference_of_a_batch_is_the_inference_of_each_image(tiny_config):
    tiny_config.model.test_mode = "slide"  # 128² windows, stride 85
    torch.manual_seed(0)
    model = instantiate(tiny_config.model).eval()
    inputs = random_inputs(batch=2, height=160, width=192, labels=False)
    with torch.no_grad():
        batched = model(inputs)
        alone = [model([x])[0] for x in inputs]
    for ours, expected in zip(batched, alone):
        torch.testing.assert_close(ours["sem_seg"], expected["sem_seg"], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- clip/text.py


def test_text_encoder_defaults_are_denseclips_rn50_text_side():
    encoder = CLIPTextEncoder()
    assert encoder.context_length == 13 and encoder.embed_dim == 1024
    assert encoder.token_embedding.weight.shape == (49408, 512)
    assert (encoder.transformer.width, encoder.transformer.layers) == (512, 12)
    assert encoder.transformer.resblocks[0].attn.num_heads == 8
    assert encoder.shared_prefix is True and encoder.transformer.use_act_checkpoint is False


def test_text_encoder_is_initialised_as_openai_clip():
    torch.manual_seed(0)
    width, layers = 64, 2
    encoder = CLIPTextEncoder(context_length=64, width=width, heads=2, layers=layers, embed_dim=32)
    attn_std, fc_std = width**-0.5, (2 * width) ** -0.5
    proj_std = attn_std * (2 * layers) ** -0.5
    expected = {
        encoder.token_embedding.weight: 0.02,
        encoder.positional_embedding: 0.01,
        encoder.text_projection: attn_std,
    }
    for block in encoder.transformer.resblocks:
        expected[block.attn.in_proj_weight] = attn_std
        expected[block.attn.out_proj.weight] = proj_std
        expected[block.mlp.c_fc.weight] = fc_std
        expected[block.mlp.c_proj.weight] = proj_std
    for tensor, std in expected.items():
        assert tensor.std().item() == pytest.approx(std, rel=0.1)


def test_a_name_of_one_bpe_token_more_than_fits_is_rejected():
    assert tokenize_class_names(["chest of drawers"], length=5).shape == (1, 5)  # 3 BPE tokens
    with pytest.raises(ValueError, match="3 BPE tokens, more than the 2 that fit in 4"):
        tokenize_class_names(["chest of drawers"], length=4)


def test_a_long_name_is_told_its_first_synonym_only_when_that_fits():
    name = "chest of drawers, chest"  # 5 BPE tokens; the first synonym has 3
    with pytest.raises(ValueError, match="such as 'chest of drawers'"):
        tokenize_class_names([name], length=5)
    with pytest.raises(ValueError) as error:
        tokenize_class_names([name], length=4)
    assert "such as" not in str(error.value)


def test_plain_encoding_rejects_more_tokens_than_the_context_length_naming_both():
    encoder = CLIPTextEncoder(context_length=6, width=32, heads=2, layers=1, embed_dim=16)
    with pytest.raises(ValueError, match="7 tokens exceed the context_length 6"):
        encoder.encode_plain(torch.zeros(2, 7, dtype=torch.long))


@pytest.mark.parametrize("shared_prefix", [False, True], ids=["plain", "shared prefix"])
def test_text_encoder_runs_no_position_after_the_last_eot(shared_prefix, monkeypatch):
    torch.manual_seed(0)
    encoder = CLIPTextEncoder(
        9, width=32, heads=2, layers=1, embed_dim=16, shared_prefix=shared_prefix
    )
    tokens = tokenize_class_names(["wall", "potted plant"])  # EOT at 2 and 3 of 5 tokens
    lengths = []
    if shared_prefix:
        run = encoder.transformer.forward_with_shared_prefix

        def counting(prefix, suffixes):  # B×P×D, groups of B×G×S×D
            lengths.extend(prefix.shape[1] + group.shape[2] for group in suffixes)
            return run(prefix, suffixes)

        monkeypatch.setattr(encoder.transformer, "forward_with_shared_prefix", counting)
    else:  # L×N×D, sequence first
        encoder.transformer.register_forward_pre_hook(lambda _, args: lengths.append(len(args[0])))
    with torch.no_grad():
        encoder(tokens, torch.randn(1, 4, 32))
    # SOT, 4 contexts, the class tokens up to the (last) EOT
    assert lengths == ([1 + 4 + 2, 1 + 4 + 3] if shared_prefix else [1 + 4 + 3])


def test_shared_prefix_encodes_a_single_class_as_the_plain_encoding():
    encoders = []
    for shared_prefix in (True, False):
        torch.manual_seed(0)
        encoder = CLIPTextEncoder(
            9, width=32, heads=2, layers=1, embed_dim=16, shared_prefix=shared_prefix
        )
        encoders.append(encoder.double().eval())
    tokens = tokenize_class_names(["wall"])
    contexts = torch.randn(2, 4, 32, dtype=torch.float64)
    with torch.no_grad():
        found, expected = (encoder(tokens, contexts) for encoder in encoders)
    assert found.shape == (2, 1, 16)
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- clip/resnet.py


def test_resnet_defaults_are_openai_rn50s():
    encoder = CLIPResNet([3, 4, 6, 3])
    pool = encoder.attnpool
    assert encoder.conv3.out_channels == 64 and encoder.input_resolution == 224
    assert pool.positional_embedding.shape == (7 * 7 + 1, 2048)
    assert pool.num_heads == 32 and pool.c_proj.out_features == 1024
    assert pool.pos_embed_resize == "bilinear" and encoder.use_act_checkpoint is False


def test_resnet_is_initialised_as_openai_clip():
    torch.manual_seed(0)
    encoder = CLIPResNet([1, 1, 1, 1], width=16, output_dim=32, heads=4, input_resolution=64)
    pool = encoder.attnpool
    std = 512**-0.5  # the pool's channels: 32 × width
    projections = (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj)
    for tensor in (pool.positional_embedding, *(proj.weight for proj in projections)):
        assert tensor.std().item() == pytest.approx(std, rel=0.1)
    last_norms = [m.bn3.weight for m in encoder.modules() if isinstance(m, Bottleneck)]
    assert len(last_norms) == 4 and all((weight == 0).all() for weight in last_norms)


def test_attention_pool_chunks_are_the_largest_that_hold_2_27_weights(monkeypatch):
    pool = AttentionPool2d(spacial_dim=2, embed_dim=32, num_heads=32)  # RN50's 32 heads
    queries = []

    def attention(q, k, v):  # B×Q×heads×d → B×Q×(heads·d), counting the queries
        queries.append(q.shape[1])
        return q.flatten(2)

    monkeypatch.setattr(pool, "_attention", attention)
    height, width = 94, 125  # the stride-32 map of a 3000×4000 image
    with torch.no_grad():
        pool(torch.zeros(1, 32, height, width))
    tokens = 1 + height * width
    assert sum(queries) == tokens and len(set(queries[:-1])) == 1
    assert max(queries) * 32 * tokens <= 2**27 < (max(queries) + 1) * 32 * tokens


def test_attention_pool_runs_one_query_at_a_time_when_one_exceeds_the_bound(monkeypatch):
    torch.manual_seed(0)
    pool = AttentionPool2d(spacial_dim=2, embed_dim=8, num_heads=2, output_dim=4).double()
    x = torch.randn(1, 8, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = pool(x)
    monkeypatch.setattr(pool, "max_attention_elements", 1)
    queries, attention = [], pool._attention

    def counting(q, k, v):
        queries.append(q.shape[1])
        return attention(q, k, v)

    monkeypatch.setattr(pool, "_attention", counting)
    with torch.no_grad():
        found = pool(x)
    assert queries == [1] * (1 + 2 * 3)
    for tensor, reference in zip(found, expected):
        torch.testing.assert_close(tensor, reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("inplanes, planes, stride", [(8, 4, 1), (8, 4, 2), (16, 4, 1), (16, 4, 2)])
def test_a_bottleneck_is_openais_for_every_stride_and_width(inplanes, planes, stride):
    torch.manual_seed(0)
    reference = openai_clip.Bottleneck(inplanes, planes, stride)
    randomize_batch_norms(reference)
    ours = Bottleneck(inplanes, planes, stride)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, inplanes, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference.eval()(x))


# ----------------------------------------------------------------------------- clip/transformer.py


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_layer_norm_applies_its_affine_in_at_least_float32(dtype):
    from denseclip.clip.transformer import LayerNorm

    torch.manual_seed(0)
    norm = LayerNorm(8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 8).to(dtype)
    compute = torch.promote_types(dtype, torch.float32)
    expected = F.layer_norm(
        x.to(compute), (8,), norm.weight.to(compute), norm.bias.to(compute), norm.eps
    ).to(dtype)
    found = norm(x)
    assert found.dtype == dtype
    torch.testing.assert_close(found, expected, rtol=0, atol=0)


def test_a_block_has_no_stochastic_depth_unless_asked():
    from denseclip.clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    block = ResidualAttentionBlock(16, 2)
    x = torch.randn(5, 2, 16)
    torch.testing.assert_close(block.train()(x), block.eval()(x), rtol=0, atol=0)


def test_a_transformer_keeps_its_activations_unless_asked():
    """By default each block runs once in a training step (no recomputation: with it, a
    pre-hook sees each block twice; the backward's recomputation may stop before the end)."""
    from denseclip.clip.transformer import Transformer

    torch.manual_seed(0)
    transformer = Transformer(16, 2, 2).train()
    calls = []
    for block in transformer.resblocks:
        block.register_forward_pre_hook(lambda *args: calls.append(1))
    transformer(torch.randn(5, 2, 16, requires_grad=True)).sum().backward()
    assert len(calls) == 2


# ----------------------------------------------------------------------------- clip/vit.py


def test_vit_defaults_are_denseclips_vit_b16_at_640():
    encoder = CLIPVisionTransformer()
    assert encoder.input_resolution == 640 and encoder.conv1.kernel_size == (16, 16)
    assert encoder.positional_embedding.shape == (40 * 40 + 1, 768)
    assert (encoder.transformer.width, encoder.transformer.layers) == (768, 12)
    assert encoder.transformer.resblocks[0].attn.num_heads == 12
    assert encoder.proj.shape == (768, 512) and encoder.embed_dim == 512
    assert encoder.out_indices == (3, 5, 7, 11) and type(encoder.fpn1[2]) is nn.BatchNorm2d
    assert all(isinstance(block.drop_path, nn.Identity) for block in encoder.transformer.resblocks)
    assert encoder.use_act_checkpoint is False


@pytest.mark.parametrize("out_indices", [(0, 1, 2), (0, 2, 1, 3), (0, 1, 1, 3), (0, 1, 2, 4)])
def test_vit_rejects_out_indices_that_are_not_4_increasing_blocks(out_indices):
    with pytest.raises(ValueError, match="out_indices must be 4 increasing block indices"):
        CLIPVisionTransformer(
            input_resolution=32, width=16, layers=4, heads=2, output_dim=8, out_indices=out_indices
        )


@pytest.mark.parametrize("encoder_class", [CLIPVisionTransformer, CLIPViTDet])
def test_vit_encoders_initialise_their_embeddings_as_openai_clip(encoder_class):
    torch.manual_seed(0)
    width = 256
    arguments = dict(input_resolution=64, width=width, layers=4, heads=4, output_dim=64)
    extra = "out_indices" if encoder_class is CLIPVisionTransformer else "window_block_indexes"
    arguments[extra] = range(4)
    encoder = encoder_class(**arguments)
    for tensor in (encoder.class_embedding, encoder.positional_embedding, encoder.proj):
        assert tensor.std().item() == pytest.approx(width**-0.5, rel=0.2)


# ----------------------------------------------------------------------------- clip/vitdet.py


def test_vitdet_defaults_are_clips_vit_b16_at_224():
    encoder = CLIPViTDet()
    blocks = encoder.transformer.resblocks
    assert encoder.conv1.kernel_size == (16, 16) and encoder.conv1.out_channels == 768
    assert len(blocks) == 12 and blocks[0].attn.num_heads == 12
    assert encoder.positional_embedding.shape == (14 * 14 + 1, 768)
    assert encoder.proj.shape == (768, 512) and encoder.embed_dim == 512
    assert encoder.use_act_checkpoint is False


def test_a_windowed_attention_block_is_clips_global_block_unless_given_a_window():
    torch.manual_seed(0)
    block = WindowedAttentionBlock(16, 2).train()  # no stochastic depth either
    reference = openai_clip.ResidualAttentionBlock(16, 2)
    reference.load_state_dict(block.state_dict())
    x = torch.randn(2, 1 + 3 * 4, 16)
    expected = reference(x.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(block(x, (3, 4)), expected)


@pytest.mark.parametrize("window_size, accepted", [(0, False), (1, True)])
def test_vitdet_windows_of_one_patch_or_more(window_size, accepted):
    arguments = dict(input_resolution=32, width=16, layers=2, heads=2, output_dim=8)
    if not accepted:
        with pytest.raises(ValueError, match="window_size must be positive"):
            CLIPViTDet(**arguments, window_size=window_size, window_block_indexes=[0])
        return
    encoder = CLIPViTDet(**arguments, window_size=window_size, window_block_indexes=[0])
    assert [block.window_size for block in encoder.transformer.resblocks] == [1, 0]


def test_vitdet_drop_path_rates_grow_linearly_from_zero():
    encoder = CLIPViTDet(
        32, width=16, layers=3, heads=2, output_dim=8, window_block_indexes=(), drop_path_rate=0.2
    )
    blocks = encoder.transformer.resblocks
    assert isinstance(blocks[0].drop_path, nn.Identity)
    assert [block.drop_path.p for block in blocks[1:]] == pytest.approx([0.1, 0.2])
