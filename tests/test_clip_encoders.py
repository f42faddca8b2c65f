"""Specification of the CLIP encoders in ``denseclip.clip``.

Reference behaviour comes from OpenAI's own modules (``clip.model``) at tiny sizes; the full-size
tests check shapes and parameter counts against OpenAI's full-size modules.
"""

import clip
import pytest
import torch
import torch.nn.functional as F
from clip import model as openai
from torch import nn

from helpers import tiny_openai_clip_vit

from denseclip.clip import (
    CLIPResNet,
    CLIPTextEncoder,
    CLIPVisionTransformer,
    Transformer,
    tokenize_class_names,
)

ATOL = 1e-5


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomize_batch_norms(model: nn.Module) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.weight.data = torch.rand(channels) + 0.5
            module.bias.data = torch.randn(channels) * 0.1
            module.running_mean = torch.randn(channels) * 0.1
            module.running_var = torch.rand(channels) + 0.5


def resize_grid(pos: torch.Tensor, side: int, height: int, width: int) -> torch.Tensor:
    """Rows 1.. of a (side²+1)×C embedding, bilinearly resized to height×width, row-major."""
    grid = pos[1:].reshape(side, side, -1).permute(2, 0, 1)[None]
    return F.interpolate(grid, size=(height, width), mode="bilinear")[0].flatten(1).t()


# ----------------------------------------------------------------------------- ResNet


@pytest.fixture
def tiny_resnets():
    """OpenAI ModifiedResNet with random weights and the same weights in a CLIPResNet."""
    torch.manual_seed(0)
    reference = openai.ModifiedResNet(
        layers=(1, 1, 1, 1), output_dim=32, heads=4, input_resolution=64, width=16
    )
    randomize_batch_norms(reference)
    ours = CLIPResNet(layers=[1, 1, 1, 1], width=16, output_dim=32, heads=4, input_resolution=64)
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.eval(), ours.eval()


@pytest.mark.parametrize(
    "layers, output_dim", [([3, 4, 6, 3], 1024), ([3, 4, 23, 3], 512)], ids=["RN50", "RN101"]
)
def test_full_size_resnet_outputs_have_stage_and_embedding_shapes(layers, output_dim):
    torch.manual_seed(0)
    model = CLIPResNet(layers, width=64, output_dim=output_dim, input_resolution=512).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "res2": (1, 256, 16, 16),
        "res3": (1, 512, 8, 8),
        "res4": (1, 1024, 4, 4),
        "res5": (1, 2048, 2, 2),
        "global_embedding": (1, output_dim),
        "dense_embedding": (1, output_dim, 2, 2),
    }
    assert model.stage_channels == {"res2": 256, "res3": 512, "res4": 1024, "res5": 2048}
    assert model.stage_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
    assert model.embed_dim == output_dim
    assert model.dense_embedding_stride == 32


@pytest.mark.parametrize(
    "layers, output_dim", [((3, 4, 6, 3), 1024), ((3, 4, 23, 3), 512)], ids=["RN50", "RN101"]
)
def test_full_size_resnet_has_openai_parameters_plus_larger_positional_embedding(
    layers, output_dim
):
    reference = openai.ModifiedResNet(
        layers=layers, output_dim=output_dim, heads=32, input_resolution=224, width=64
    )
    ours = CLIPResNet(list(layers), width=64, output_dim=output_dim, input_resolution=512)
    extra_rows = (16**2 + 1) - (7**2 + 1)
    assert num_params(ours) - num_params(reference) == extra_rows * 2048
    assert ours.attnpool.num_heads == 32


def test_resnet_state_dict_names_are_openai_visual_names(tiny_resnets):
    reference, ours = tiny_resnets
    assert list(ours.state_dict()) == list(reference.state_dict())


def test_resnet_global_embedding_equals_openai_attention_pool_output(tiny_resnets):
    reference, ours = tiny_resnets
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(images)
        outputs = ours(images)
    torch.testing.assert_close(outputs["global_embedding"], expected, atol=ATOL, rtol=0)


def test_resnet_dense_embedding_is_multihead_attention_output_at_each_position(tiny_resnets):
    _, ours = tiny_resnets
    pool = ours.attnpool
    mha = nn.MultiheadAttention(512, num_heads=4)
    mha.in_proj_weight.data = torch.cat(
        [pool.q_proj.weight, pool.k_proj.weight, pool.v_proj.weight]
    )
    mha.in_proj_bias.data = torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias])
    mha.out_proj = pool.c_proj
    res5 = torch.randn(2, 512, 2, 2)
    tokens = res5.flatten(2).permute(2, 0, 1)  # 4×B×C
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens]) + pool.positional_embedding[:, None]
    with torch.no_grad():
        expected = mha.eval()(tokens, tokens, tokens, need_weights=False)[0]  # 5×B×32
        global_embedding, dense_embedding = pool(res5)
    torch.testing.assert_close(global_embedding, expected[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(
        dense_embedding, expected[1:].permute(1, 2, 0).reshape(2, 32, 2, 2), atol=ATOL, rtol=0
    )


def test_resnet_positional_embedding_is_resized_bilinearly_to_the_feature_map(tiny_resnets):
    reference, ours = tiny_resnets
    pos = reference.attnpool.positional_embedding.data
    reference.attnpool.positional_embedding.data = torch.cat([pos[:1], resize_grid(pos, 2, 3, 2)])
    images = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        expected = reference(images)
        outputs = ours(images)
    assert outputs["dense_embedding"].shape == (2, 32, 3, 2)
    assert outputs["res2"].shape == (2, 64, 24, 16)
    torch.testing.assert_close(outputs["global_embedding"], expected, atol=ATOL, rtol=0)


def test_resnet_without_attention_pool_returns_only_stage_features():
    model = CLIPResNet([1, 1, 1, 1], width=16, with_attention_pool=False).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert sorted(outputs) == ["res2", "res3", "res4", "res5"]
    assert model.embed_dim is None
    assert not any(name.startswith("attnpool") for name in model.state_dict())


# ----------------------------------------------------------------------------- ViT


@pytest.fixture
def tiny_vits():
    """OpenAI VisionTransformer with random weights and the same weights in ours."""
    torch.manual_seed(0)
    reference = openai.VisionTransformer(
        input_resolution=32, patch_size=16, width=64, layers=4, heads=4, output_dim=32
    )
    ours = CLIPVisionTransformer(
        input_resolution=32, width=64, layers=4, heads=4, output_dim=32, out_indices=(0, 1, 2, 3)
    ).eval()
    result = ours.load_state_dict(reference.state_dict(), strict=False)
    assert result.unexpected_keys == []
    assert all(key.startswith("fpn") for key in result.missing_keys)
    return reference.eval(), ours


def transformer_output_hook(model: nn.Module) -> list:
    captured = []
    model.transformer.register_forward_hook(lambda module, args, output: captured.append(output))
    return captured


def test_full_size_vit_b16_outputs_have_pyramid_and_embedding_shapes():
    torch.manual_seed(0)
    model = CLIPVisionTransformer(input_resolution=640).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "res2": (1, 768, 16, 16),
        "res3": (1, 768, 8, 8),
        "res4": (1, 768, 4, 4),
        "res5": (1, 768, 2, 2),
        "global_embedding": (1, 512),
        "dense_embedding": (1, 512, 4, 4),
    }
    assert model.stage_channels == {"res2": 768, "res3": 768, "res4": 768, "res5": 768}
    assert model.embed_dim == 512
    assert model.dense_embedding_stride == 16


def test_full_size_vit_b16_has_openai_parameters_plus_pyramid_and_larger_positions():
    reference = openai.VisionTransformer(
        input_resolution=224, patch_size=16, width=768, layers=12, heads=12, output_dim=512
    )
    ours = CLIPVisionTransformer(input_resolution=640)
    width = 768
    group_norm = batch_norm = 2 * width
    deconv = 4 * width * width + width
    pyramid = (group_norm + deconv + batch_norm + deconv) + (group_norm + deconv) + 2 * group_norm
    extra_rows = (40**2 + 1) - (14**2 + 1)
    assert num_params(ours) - num_params(reference) == pyramid + extra_rows * width


def test_vit_uses_official_class_token_arithmetic_on_openai_weights(tiny_vits):
    """The official code adds class_embedding to the class row of the positional embedding, on
    top of the class token itself: OpenAI's model with pos[0] += class_embedding is equal."""
    reference, ours = tiny_vits
    reference.positional_embedding.data[0] += reference.class_embedding.data
    captured = transformer_output_hook(reference)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected_global = reference(images)
        outputs = ours(images)
        patch_tokens = captured[0][1:].transpose(0, 1)  # B×4×64
        expected_dense = reference.ln_post(patch_tokens) @ reference.proj
    torch.testing.assert_close(outputs["global_embedding"], expected_global, atol=ATOL, rtol=0)
    torch.testing.assert_close(
        outputs["dense_embedding"],
        expected_dense.transpose(1, 2).reshape(2, 32, 2, 2),
        atol=ATOL,
        rtol=0,
    )


def test_vit_positional_embedding_is_resized_bilinearly_to_the_patch_grid(tiny_vits):
    reference, ours = tiny_vits
    pos = reference.positional_embedding.data
    cls_pos = pos[:1] + reference.class_embedding.data
    reference.positional_embedding.data = torch.cat([cls_pos, resize_grid(pos, 2, 3, 2)])
    images = torch.randn(2, 3, 48, 32)
    with torch.no_grad():
        expected = reference(images)
        outputs = ours(images)
    assert outputs["dense_embedding"].shape == (2, 32, 3, 2)
    torch.testing.assert_close(outputs["global_embedding"], expected, atol=ATOL, rtol=0)


def test_vit_pyramid_levels_have_strides_4_8_16_32():
    torch.manual_seed(0)
    model = CLIPVisionTransformer(
        input_resolution=64, width=32, layers=4, heads=2, output_dim=16, out_indices=(0, 1, 2, 3)
    ).eval()
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 96))
    for name, stride in model.stage_strides.items():
        assert outputs[name].shape == (1, 32, 64 // stride, 96 // stride)
    assert model.stage_strides == {"res2": 4, "res3": 8, "res4": 16, "res5": 32}


def test_vit_pyramid_keeps_official_module_names():
    model = CLIPVisionTransformer(
        input_resolution=32, width=32, layers=4, heads=2, out_indices=(0, 1, 2, 3), norm="SyncBN"
    )
    pyramid_keys = {k.rsplit(".", 1)[0] for k in model.state_dict() if k.startswith("fpn")}
    official = {"fpn1.0", "fpn1.1", "fpn1.2", "fpn1.4", "fpn2.0", "fpn2.1", "fpn3", "fpn4.0"}
    assert pyramid_keys == official
    assert isinstance(model.fpn1[2], nn.SyncBatchNorm)


def test_vit_rejects_patch_size_other_than_16():
    with pytest.raises(ValueError, match="patch_size"):
        CLIPVisionTransformer(input_resolution=64, patch_size=32)


def test_transformer_drop_path_rates_grow_linearly_from_zero():
    blocks = Transformer(width=16, layers=3, heads=2, drop_path_rate=0.2).resblocks
    assert isinstance(blocks[0].drop_path, nn.Identity)
    assert [block.drop_path.p for block in blocks[1:]] == pytest.approx([0.1, 0.2])


# ----------------------------------------------------------------------------- text


def tiny_text_encoder(context_length: int = 13) -> CLIPTextEncoder:
    torch.manual_seed(0)
    return CLIPTextEncoder(context_length, width=64, heads=4, layers=2, embed_dim=32).eval()


def test_text_encoder_has_openai_text_parameters_with_truncated_positions():
    reference = openai.CLIP(
        embed_dim=1024,
        image_resolution=32,
        vision_layers=1,
        vision_width=64,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    )
    text_params = sum(
        p.numel()
        for name, p in reference.named_parameters()
        if not name.startswith("visual.") and name != "logit_scale"
    )
    ours = CLIPTextEncoder(context_length=13, width=512, heads=8, layers=12, embed_dim=1024)
    assert num_params(ours) == text_params - (77 - 13) * 512
    assert set(ours.state_dict()) == {
        name for name in reference.state_dict() if not name.startswith("visual.")
    } - {"logit_scale"}


def test_text_encode_plain_equals_openai_encode_text():
    torch.manual_seed(0)
    reference = tiny_openai_clip_vit(embed_dim=32, image_resolution=32, vision_layers=1)
    ours = tiny_text_encoder(context_length=77)
    text_weights = {k: v for k, v in reference.state_dict().items() if k in ours.state_dict()}
    ours.load_state_dict(text_weights, strict=True)
    tokens = clip.tokenize(["a photo of a cat", "wall", "a potted plant on a table"])
    with torch.no_grad():
        torch.testing.assert_close(
            ours.encode_plain(tokens), reference.encode_text(tokens), atol=ATOL, rtol=0
        )


def test_text_features_with_contexts_equal_hand_built_sequence_read_at_eot_plus_n():
    encoder = tiny_text_encoder()
    tokens = tokenize_class_names(["wall", "potted plant", "chest of drawers"])
    contexts = torch.randn(1, 8, 64)
    with torch.no_grad():
        features = encoder(tokens, contexts)
        expected = []
        for row in tokens:
            embedded = encoder.token_embedding(row)
            sequence = torch.cat([embedded[:1], contexts[0], embedded[1:]])
            sequence = sequence + encoder.positional_embedding
            hidden = encoder.transformer(sequence[:, None])[:, 0]  # 13×64, full causal mask
            eot = int(row.argmax()) + 8
            expected.append(encoder.ln_final(hidden[eot]) @ encoder.text_projection)
    assert features.shape == (1, 3, 32)
    torch.testing.assert_close(features[0], torch.stack(expected), atol=ATOL, rtol=0)


def test_text_features_ignore_tokens_after_eot_but_depend_on_class_tokens():
    encoder = tiny_text_encoder()
    tokens = tokenize_class_names(["wall", "sky"])
    contexts = torch.randn(1, 8, 64)
    after_eot = tokens.clone()
    after_eot[:, 3:] = 123  # both EOTs are at index 2; 123 < EOT id keeps argmax
    other_class = tokens.clone()
    other_class[0, 1] = tokens[1, 1]
    with torch.no_grad():
        features = encoder(tokens, contexts)
        torch.testing.assert_close(encoder(after_eot, contexts), features, atol=ATOL, rtol=0)
        changed = encoder(other_class, contexts)
    assert not torch.allclose(changed[0, 0], features[0, 0], atol=1e-3)
    torch.testing.assert_close(changed[0, 0], features[0, 1], atol=ATOL, rtol=0)


def test_text_encoder_runs_each_image_contexts_separately():
    encoder = tiny_text_encoder()
    tokens = tokenize_class_names(["wall", "sky", "potted plant"])
    contexts = torch.randn(2, 8, 64)
    with torch.no_grad():
        batched = encoder(tokens, contexts)
        single = [encoder(tokens, contexts[i : i + 1]) for i in range(2)]
    assert batched.shape == (2, 3, 32)
    torch.testing.assert_close(batched, torch.cat(single), atol=ATOL, rtol=0)


def test_text_encoder_rejects_tokens_plus_contexts_not_equal_to_context_length():
    encoder = tiny_text_encoder()
    tokens = tokenize_class_names(["wall"])
    with pytest.raises(ValueError, match=r"5 class tokens \+ 6 contexts = 11.*13"):
        encoder(tokens, torch.randn(1, 6, 64))


def test_text_causal_mask_is_not_saved_in_the_state_dict():
    encoder = tiny_text_encoder()
    assert encoder.transformer.resblocks[0].attn_mask.shape == (13, 13)
    assert not any("mask" in name for name in encoder.state_dict())


# ----------------------------------------------------------------------------- tokenizer


def test_tokenize_class_names_places_sot_bpe_eot_and_zero_padding():
    names = ["wall", "potted plant", "chest of drawers"]
    tokens = tokenize_class_names(names)
    assert tokens.shape == (3, 5) and tokens.dtype == torch.long
    assert tokens.tolist() == clip.tokenize(names, context_length=5).tolist()
    sot, eot = 49406, 49407
    assert tokens[:, 0].tolist() == [sot] * 3
    assert tokens.argmax(dim=1).tolist() == [2, 3, 4]
    assert tokens[0, 2:].tolist() == [eot, 0, 0]


def test_tokenize_class_names_rejects_a_long_name_and_names_it():
    with pytest.raises(ValueError) as error:
        tokenize_class_names(["wall", "chest of drawers, chest, bureau, dresser"])
    message = str(error.value)
    assert "'chest of drawers, chest, bureau, dresser'" in message
    assert "9 BPE tokens" in message and "3" in message
    assert "'chest of drawers'" in message  # the suggested shorter name


def test_tokenize_class_names_rejects_an_empty_list():
    with pytest.raises(ValueError, match="no class names"):
        tokenize_class_names([])


# ----------------------------------------------------------------------------- checkpointing


def train_step_with_and_without_checkpointing(make, inputs, loss):
    """Builds ``make(use_act_checkpoint=flag)`` for both flags (same seed, float64, training),
    runs ``loss(model, inputs)`` backward and returns {flag: (model, parameter gradients)}."""
    results = {}
    for flag in (False, True):
        torch.manual_seed(0)
        model = make(use_act_checkpoint=flag).double().train()
        torch.manual_seed(1)  # the same dropout / drop-path draws
        loss(model, inputs).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results[flag] = (model, grads)
    return results


def assert_same_gradients(results):
    plain, recomputed = results[False][1], results[True][1]
    assert plain and plain.keys() == recomputed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, atol=1e-12, rtol=0, msg=name)


def count_forward_calls(module: nn.Module) -> list:
    calls = [0]
    module.register_forward_pre_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_resnet_checkpointing_keeps_gradients_and_counts_each_batch_once_in_batch_norms():
    def make(**kwargs):
        model = CLIPResNet(layers=[1, 2, 1, 1], width=8, output_dim=16, heads=2, **kwargs)
        randomize_batch_norms(model)
        return model

    def loss(model, images):
        outputs = model(images)
        return outputs["res2"].square().mean() + outputs["dense_embedding"].sum()

    results = train_step_with_and_without_checkpointing(
        make, torch.randn(2, 3, 64, 64).double(), loss
    )
    assert_same_gradients(results)
    plain, recomputed = results[False][0], results[True][0]
    for name, buffer in plain.named_buffers():
        torch.testing.assert_close(recomputed.get_buffer(name), buffer, atol=1e-12, rtol=0)


def test_resnet_checkpointing_recomputes_the_stem_and_the_stages_only_in_training():
    model = CLIPResNet(
        layers=[1, 1, 1, 1], width=8, output_dim=16, heads=2, use_act_checkpoint=True
    )
    calls = {name: count_forward_calls(module) for name, module in model.named_children()}
    images = torch.randn(1, 3, 64, 64)
    model.train()(images)["dense_embedding"].sum().backward()
    twice = {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", *(f"layer{i}" for i in range(1, 5))}
    assert {name for name, count in calls.items() if count[0] == 2} >= twice
    assert calls["attnpool"] == [1]
    model.eval()(images)["dense_embedding"].sum().backward()
    assert calls["layer1"] == [3]


def test_vit_checkpointing_keeps_gradients_with_drop_path():
    def make(**kwargs):
        return CLIPVisionTransformer(
            input_resolution=64,
            width=32,
            layers=4,
            heads=2,
            output_dim=16,
            out_indices=(0, 1, 2, 3),
            drop_path_rate=0.3,
            **kwargs,
        )

    def loss(model, images):
        outputs = model(images)
        return outputs["res3"].square().mean() + outputs["global_embedding"].sum()

    results = train_step_with_and_without_checkpointing(
        make, torch.randn(2, 3, 64, 64).double(), loss
    )
    assert_same_gradients(results)
    model = results[True][0]
    calls = count_forward_calls(model.transformer.resblocks[2])
    loss(model, torch.randn(1, 3, 64, 64).double()).backward()
    assert calls == [2]


@pytest.mark.parametrize("shared_prefix", [True, False], ids=["shared prefix", "plain"])
def test_text_encoder_checkpointing_keeps_the_context_gradients(shared_prefix):
    tokens = tokenize_class_names(["wall", "potted plant", "chest of drawers"])
    gradients = {}
    for flag in (False, True):
        torch.manual_seed(0)
        encoder = CLIPTextEncoder(
            13,
            width=64,
            heads=4,
            layers=2,
            embed_dim=32,
            shared_prefix=shared_prefix,
            use_act_checkpoint=flag,
        )
        encoder = encoder.double().train().requires_grad_(False)
        contexts = torch.randn(
            2, 8, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        )
        contexts.requires_grad_(True)
        encoder(tokens, contexts).square().sum().backward()
        gradients[flag] = contexts.grad
    torch.testing.assert_close(gradients[True], gradients[False], atol=1e-12, rtol=0)


def test_text_encoder_checkpointing_recomputes_the_blocks(monkeypatch):
    encoder = CLIPTextEncoder(
        13, width=64, heads=4, layers=2, embed_dim=32, use_act_checkpoint=True
    )
    encoder.requires_grad_(False).train()
    tokens = tokenize_class_names(["wall", "sky"])
    contexts = torch.randn(1, 8, 64, requires_grad=True)
    calls = []
    original = type(encoder.transformer.resblocks[0]).forward_causal
    monkeypatch.setattr(
        type(encoder.transformer.resblocks[0]),
        "forward_causal",
        lambda block, *args: calls.append(block) or original(block, *args),
    )
    encoder(tokens, contexts).sum().backward()
    assert len(calls) == 2 * 2 * 2  # (prefix, suffixes) × 2 layers, forward and backward
    calls.clear()
    with torch.no_grad():
        encoder(tokens, contexts)
    assert len(calls) == 2 * 2
