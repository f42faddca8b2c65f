"""Specification of ``denseclip.prompting``: context decoder, class text prompts and score maps."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from denseclip.checkpoint.deploy import (
    DeployedClassPrompts,
    deploy_class_prompts,
    fit_prompts_to_checkpoint,
)
from denseclip.prompting import ContextAttention, ContextDecoder, score_maps

pytestmark = pytest.mark.usefixtures("single_torch_thread")

K = 3  # the conftest's three class names
C = 32  # the tiny modules' embedding width
CONTEXT_LENGTH, CLASS_TOKEN_LENGTH = 9, 5  # the tiny text encoder: 5 class tokens + 4 contexts


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (LayerNorm weights around 1), so that no term vanishes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator) * 0.3
            is_norm_weight = param.dim() == 1 and name.endswith("weight")
            param.copy_(noise + 1 if is_norm_weight else noise)
    return module


# ----------------------------------------------------------------------------- reference


def reference_attention(attn: ContextAttention, query, memory):
    """Official ``Attention``: bias-free q/k/v, scale head_dim^-0.5, softmax, output proj."""
    B, N, width = query.shape
    heads = attn.num_heads
    head_dim = width // heads
    q = F.linear(query, attn.q_proj.weight).reshape(B, N, heads, head_dim).transpose(1, 2)
    k = F.linear(memory, attn.k_proj.weight).reshape(B, -1, heads, head_dim).transpose(1, 2)
    v = F.linear(memory, attn.v_proj.weight).reshape(B, -1, heads, head_dim).transpose(1, 2)
    weights = torch.softmax(q @ k.transpose(-1, -2) * head_dim**-0.5, dim=-1)  # B×h×N×M
    out = (weights @ v).transpose(1, 2).reshape(B, N, width)
    return F.linear(out, attn.proj.weight, attn.proj.bias)


def layer_norm(norm: nn.LayerNorm, x):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def reference_context_decoder(decoder: ContextDecoder, text, visual):
    """Official ``ContextDecoder`` / ``TransformerDecoderLayer`` forward (no dropout)."""
    ln_a, fc, ln_b = decoder.memory_proj
    memory = layer_norm(ln_b, F.linear(layer_norm(ln_a, visual), fc.weight, fc.bias))
    ln, fc = decoder.text_proj
    x = F.linear(layer_norm(ln, text), fc.weight, fc.bias)
    for layer in decoder.decoder:
        normed = layer_norm(layer.norm1, x)
        x = x + reference_attention(layer.self_attn, normed, normed)
        x = x + reference_attention(layer.cross_attn, layer_norm(layer.norm2, x), memory)
        fc1, _, _, fc2 = layer.mlp
        hidden = F.gelu(F.linear(layer_norm(layer.norm3, x), fc1.weight, fc1.bias))
        x = x + F.linear(hidden, fc2.weight, fc2.bias)
    ln, fc = decoder.out_proj
    return F.linear(layer_norm(ln, x), fc.weight, fc.bias)


# ----------------------------------------------------------------------------- ContextDecoder


def test_context_decoder_returns_one_update_per_class_and_image(context_decoder):
    text, visual = torch.randn(2, K, C), torch.randn(2, 1 + 4 * 5, C)
    assert context_decoder.eval()(text, visual).shape == (2, K, C)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_context_decoder_matches_official_formulas_in_eval_mode(make_context_decoder, num_layers):
    decoder = randomize_(make_context_decoder(num_layers=num_layers)).eval()
    torch.manual_seed(3)
    text, visual = torch.randn(2, K, C), torch.randn(2, 1 + 6, C)
    with torch.no_grad():
        ours = decoder(text, visual)
        expected = reference_context_decoder(decoder, text, visual)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_context_decoder_memory_is_not_normalised_again_by_norm2(make_context_decoder):
    """Guards the reference itself: re-norming the memory with norm2 would change the result."""
    decoder = randomize_(make_context_decoder()).eval()
    layer = decoder.decoder[0]
    torch.manual_seed(3)
    text, visual = torch.randn(1, K, C), torch.randn(1, 5, C)
    with torch.no_grad():
        memory = decoder.memory_proj(visual)
        x = decoder.text_proj(text)
        as_is = layer.cross_attn(layer.norm2(x), memory)
        renormed = layer.cross_attn(layer.norm2(x), layer.norm2(memory))
        assert not torch.allclose(as_is, renormed, atol=1e-4)
        torch.testing.assert_close(
            decoder(text, visual), reference_context_decoder(decoder, text, visual)
        )


def test_context_decoder_is_stochastic_only_in_training(context_decoder):
    text, visual = torch.randn(2, K, C), torch.randn(2, 5, C)
    context_decoder.eval()
    torch.testing.assert_close(context_decoder(text, visual), context_decoder(text, visual))
    context_decoder.train()
    torch.manual_seed(0)
    first = context_decoder(text, visual)
    torch.manual_seed(1)
    assert not torch.allclose(first, context_decoder(text, visual))


def test_context_decoder_linear_weights_are_trunc_normal_std_002_and_biases_zero():
    torch.manual_seed(0)
    decoder = ContextDecoder(visual_dim=64, width=32, num_heads=2, num_layers=2)
    linears = [m for m in decoder.modules() if isinstance(m, nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in linears])
    assert weights.numel() > 10_000
    assert abs(weights.mean().item()) < 1e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    for m in linears:
        if m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0
    norms = [m for m in decoder.modules() if isinstance(m, nn.LayerNorm)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_context_attention_qkv_projections_have_no_bias_but_output_projection_does():
    attn = ContextAttention(16, num_heads=2)
    assert attn.q_proj.bias is None and attn.k_proj.bias is None and attn.v_proj.bias is None
    assert attn.proj.bias is not None
    assert attn.scale == pytest.approx(8**-0.5)


def test_context_attention_rejects_width_not_divisible_by_heads():
    with pytest.raises(ValueError):
        ContextAttention(10, num_heads=3)


# ----------------------------------------------------------------------------- gamma, Eq. 5


def visual_context_of(backbone, images):
    """(z̄, z, [z̄, z] as B×(1+hw)×C) of the backbone's image encoder."""
    features = backbone.image_encoder(images)
    z_bar, z = features["global_embedding"], features["dense_embedding"]
    return z_bar, z, torch.cat([z_bar[:, None], z.flatten(2).transpose(1, 2)], dim=1)


def test_gamma_is_initialised_to_1e_4_for_every_channel(backbone):
    assert backbone.gamma.shape == (C,)
    assert torch.all(backbone.gamma == 1e-4)


def test_with_gamma_zero_text_embeddings_equal_the_prompts_output(backbone):
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        backbone.gamma.zero_()
        z_bar, z, _ = visual_context_of(backbone, images)
        text = backbone.text_embeddings(z_bar, z)
        prompts = backbone.prompts()
    assert text.shape == (2, K, C)
    assert torch.equal(text, prompts.expand(2, -1, -1))


def test_with_gamma_one_text_embeddings_are_prompts_plus_decoder_update(backbone):
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        backbone.gamma.fill_(1.0)
        z_bar, z, visual = visual_context_of(backbone, images)
        text = backbone.text_embeddings(z_bar, z)
        t = backbone.prompts().expand(2, -1, -1)
        expected = t + reference_context_decoder(backbone.context_decoder, t, visual)
    torch.testing.assert_close(text, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- ClassTextPrompts


def test_contexts_have_one_row_per_free_text_position(prompts):
    num_contexts = CONTEXT_LENGTH - CLASS_TOKEN_LENGTH
    assert prompts.contexts.shape == (1, num_contexts, 32)
    assert prompts.class_tokens.shape == (K, CLASS_TOKEN_LENGTH)
    assert prompts.num_classes == K


def test_class_tokens_are_not_saved_in_the_state_dict(prompts):
    assert "class_tokens" not in prompts.state_dict()
    assert "contexts" in prompts.state_dict()


def test_prompts_reject_a_text_encoder_shorter_than_the_class_tokens(make_prompts):
    with pytest.raises(ValueError):
        make_prompts(class_token_length=CONTEXT_LENGTH + 1)


def test_prompts_output_one_embedding_per_class(prompts):
    assert prompts.train()().shape == (1, K, C)
    assert prompts.eval()().shape == (1, K, C)


def test_text_encoder_is_frozen_but_contexts_receive_gradients(prompts):
    assert not any(p.requires_grad for p in prompts.text_encoder.parameters())
    assert prompts.contexts.requires_grad
    prompts.train()
    prompts().square().sum().backward()
    assert prompts.contexts.grad is not None
    assert torch.count_nonzero(prompts.contexts.grad) > 0
    assert all(p.grad is None for p in prompts.text_encoder.parameters())


def test_text_encoder_can_be_left_trainable(make_prompts):
    prompts = make_prompts(freeze_text_encoder=False)
    assert all(p.requires_grad for p in prompts.text_encoder.parameters())


class CountCalls:
    """Counts forward calls of a module."""

    def __init__(self, module: nn.Module):
        self.count = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.count += 1


def test_eval_output_equals_train_output(prompts):
    training_output = prompts.train()().detach()
    cached = prompts.eval()()
    torch.testing.assert_close(cached, training_output, rtol=0, atol=1e-6)


def test_eval_output_is_cached_without_recomputation(prompts):
    calls = CountCalls(prompts.text_encoder)
    prompts.eval()
    first = prompts()
    second = prompts()
    assert second is first
    assert calls.count == 1


def test_cached_output_does_not_require_grad(prompts):
    assert not prompts.eval()().requires_grad


def test_training_mode_recomputes_every_call(prompts):
    calls = CountCalls(prompts.text_encoder)
    prompts.train()
    prompts()
    prompts()
    assert calls.count == 2


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
def test_cache_is_invalidated_by_an_optimizer_step_on_the_contexts(prompts, foreach):
    calls = CountCalls(prompts.text_encoder)
    optimizer = torch.optim.SGD([prompts.contexts], lr=0.5, foreach=foreach)
    prompts.eval()
    before = prompts().clone()
    prompts.contexts.grad = torch.randn_like(prompts.contexts)
    optimizer.step()
    after = prompts()
    assert calls.count == 2
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, prompts.text_encoder(prompts.class_tokens, prompts.contexts))


def test_cache_is_invalidated_by_an_in_place_change_of_a_text_encoder_parameter(prompts):
    prompts.eval()
    before = prompts().clone()
    with torch.no_grad():
        prompts.text_encoder.text_projection.mul_(2)
    torch.testing.assert_close(prompts(), 2 * before)


def test_cache_is_invalidated_by_load_state_dict(make_prompts):
    prompts, other = make_prompts(seed=1), make_prompts(seed=5)
    prompts.eval()
    before = prompts().clone()
    prompts.load_state_dict(other.state_dict())
    expected = other.eval()()
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(prompts(), expected)


def test_cache_is_invalidated_when_parameters_are_replaced_through_vector_to_parameters(prompts):
    """``vector_to_parameters`` assigns ``param.data``, which leaves the version counter alone."""
    prompts.eval()
    before = prompts().clone()
    params = [prompts.contexts]
    torch.nn.utils.vector_to_parameters(torch.nn.utils.parameters_to_vector(params) * 3, params)
    expected = prompts.text_encoder(prompts.class_tokens, prompts.contexts)
    assert not torch.allclose(before, expected)
    torch.testing.assert_close(prompts(), expected)


def test_cache_filled_in_inference_mode_is_not_reused_outside_it(prompts):
    calls = CountCalls(prompts.text_encoder)
    prompts.eval()
    with torch.inference_mode():
        inside = prompts()
    outside = prompts()
    assert calls.count == 2
    assert not outside.is_inference()
    torch.testing.assert_close(outside, inside)


def test_cache_is_dropped_when_switching_mode(prompts):
    calls = CountCalls(prompts.text_encoder)
    prompts.eval()
    prompts()
    prompts.train()
    prompts.eval()
    prompts()
    assert calls.count == 2
    prompts.eval()  # eval() again is no switch: the cache stays valid
    prompts()
    assert calls.count == 2


def test_cache_is_dropped_when_a_parent_module_switches_mode(backbone):
    prompts = backbone.prompts
    calls = CountCalls(prompts.text_encoder)
    backbone.eval()
    prompts()
    backbone.train()
    backbone.eval()
    prompts()
    assert calls.count == 2


def test_cache_is_invalidated_when_the_contexts_parameter_is_replaced(prompts):
    prompts.eval()
    before = prompts().clone()
    prompts.contexts = nn.Parameter(torch.randn_like(prompts.contexts))
    after = prompts()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, prompts.text_encoder(prompts.class_tokens, prompts.contexts))


@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_sharded_embeddings_of_every_rank_assemble_the_class_embeddings(prompts, ranks):
    """Rank r encodes ⌈K/R⌉ classes (K=3: 3; 2 and 2; 1, 1, 1 and a padding copy): the ranks'
    slices, gathered in rank order, are the unsharded embeddings, and the padding is dropped."""
    prompts.train()
    slices = []

    def gather_slices_so_far(shard):  # stands in for all_gather: this rank's slice, R times
        slices.append(shard)
        return [shard] * ranks

    for rank in range(ranks):
        assert prompts.sharded_embeddings(rank, ranks, gather_slices_so_far).shape == (1, K, C)
    assert [s.shape[1] for s in slices] == [-(-K // ranks)] * ranks
    gathered = torch.cat(slices, dim=1)[:, :K]
    # float32; the shared-prefix text path batches 1 class or 3 with different rounding
    torch.testing.assert_close(gathered, prompts(), rtol=1e-5, atol=1e-6)


def test_sharding_is_on_by_default_and_inert_without_a_process_group(make_prompts):
    assert make_prompts().shard_text_across_ranks
    sharded = make_prompts().train()
    calls = CountCalls(sharded.text_encoder)
    unsharded = make_prompts(shard_text_across_ranks=False).train()
    torch.testing.assert_close(sharded(), unsharded(), rtol=0, atol=0)
    assert calls.count == 1


# ----------------------------------------------------------------------------- encode / deploy


def test_encode_of_the_class_names_equals_the_prompts_output(prompts, class_names):
    prompts.eval()
    with torch.no_grad():
        torch.testing.assert_close(prompts.encode(class_names), prompts())
        assert prompts.encode(["tree"]).shape == (1, 1, C)


def deployed_model(prompts: nn.Module) -> nn.Module:
    """A model holding ``prompts`` (as ``model.prompts``), its class prompts deployed."""
    model = nn.ModuleDict({"prompts": prompts.eval()})
    deploy_class_prompts(model)
    return model


def test_deploy_keeps_the_output_and_drops_the_text_encoder(prompts):
    prompts.eval()
    expected = prompts().clone()
    deployed = deployed_model(prompts)["prompts"]
    assert isinstance(deployed, DeployedClassPrompts)
    assert list(deployed.state_dict()) == ["deployed_embeddings"]
    torch.testing.assert_close(deployed(), expected)


def test_deployed_prompts_are_inference_only(prompts):
    deployed = deployed_model(prompts)["prompts"]
    with pytest.raises(RuntimeError):
        deployed.train()()


def test_loading_a_deployed_state_dict_deploys_fresh_prompts(make_prompts):
    deployed = deployed_model(make_prompts(seed=5))
    fresh = nn.ModuleDict({"prompts": make_prompts(seed=1)})
    fit_prompts_to_checkpoint(fresh, deployed.state_dict())
    fresh.load_state_dict(deployed.state_dict())
    assert isinstance(fresh["prompts"], DeployedClassPrompts)
    torch.testing.assert_close(fresh.eval()["prompts"](), deployed["prompts"]())


def test_deployed_embeddings_of_another_class_count_are_rejected(make_prompts):
    deployed = deployed_model(make_prompts(names=["cat", "dog"]))
    with pytest.raises(ValueError, match="deployed_embeddings"):
        fit_prompts_to_checkpoint(nn.ModuleDict({"prompts": make_prompts()}), deployed.state_dict())


def test_a_full_state_dict_is_refused_by_deployed_prompts(make_prompts):
    deployed = deployed_model(make_prompts())
    full = nn.ModuleDict({"prompts": make_prompts()}).state_dict()
    with pytest.raises(ValueError, match="prompts.contexts and a text encoder"):
        fit_prompts_to_checkpoint(deployed, full)


# ----------------------------------------------------------------------------- score maps


def test_score_maps_are_cosine_similarities():
    torch.manual_seed(0)
    dense, text = torch.randn(2, C, 3, 4), torch.randn(2, K, C)
    scores = score_maps(dense, text)
    assert scores.shape == (2, K, 3, 4)
    for b, k, y, x in [(0, 0, 0, 0), (1, 2, 2, 3), (0, 1, 1, 2), (1, 0, 2, 0)]:
        z, t = dense[b, :, y, x], text[b, k]
        cosine = (z @ t) / (z.norm() * t.norm())
        assert scores[b, k, y, x].item() == pytest.approx(cosine.item(), abs=1e-6)


def test_score_maps_do_not_depend_on_embedding_norms():
    torch.manual_seed(0)
    dense, text = torch.randn(1, C, 2, 2), torch.randn(1, K, C)
    torch.testing.assert_close(score_maps(3 * dense, 0.5 * text), score_maps(dense, text))


def test_score_maps_with_batch_shared_text_equal_expanded_text():
    torch.manual_seed(0)
    dense, text = torch.randn(2, C, 3, 4), torch.randn(1, K, C)
    shared = score_maps(dense, text)
    assert shared.shape == (2, K, 3, 4)
    torch.testing.assert_close(shared, score_maps(dense, text.expand(2, -1, -1)))
