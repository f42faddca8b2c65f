"""Specification of shared-prefix text encoding (``CLIPTextEncoder(shared_prefix=True)``).

A prompt is [SOT, ctx_1..ctx_N, class tokens, EOT, padding] under CLIP's causal mask, so its first
1+N positions are the same for every class: the shared-prefix encoding runs them once per context
set and each class's own tokens against their keys and values. It must give the embeddings and
the context gradients of the plain computation (every prompt as one whole sequence), checked in
float64 where only rounding separates the two.
"""

import pytest
import torch

from denseclip.clip import (
    CLIPTextEncoder,
    ResidualAttentionBlock,
    Transformer,
    tokenize_class_names,
)
from denseclip.prompting import ClassTextPrompts

pytestmark = pytest.mark.usefixtures("single_torch_thread")

WIDTH, HEADS, LAYERS, EMBED_DIM = 64, 4, 2, 32
NUM_CONTEXTS, CLASS_TOKEN_LENGTH = 8, 5
#: 1, 2 and 3 BPE tokens: the EOT positions differ.
CLASS_NAMES = ["wall", "potted plant", "chest of drawers", "sky"]
FLOAT64_ATOL = 1e-10


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (LayerNorm weights around 1), so that no term vanishes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator, dtype=param.dtype) * 0.3
            is_norm_weight = param.dim() == 1 and name.endswith("weight")
            param.copy_(noise + 1 if is_norm_weight else noise)
    return module


def text_encoders(dtype=torch.float64):
    """The same frozen tiny text encoder twice: (shared prefix, plain)."""
    encoders = []
    for shared_prefix in (True, False):
        torch.manual_seed(0)
        encoder = CLIPTextEncoder(
            NUM_CONTEXTS + CLASS_TOKEN_LENGTH,
            width=WIDTH,
            heads=HEADS,
            layers=LAYERS,
            embed_dim=EMBED_DIM,
            shared_prefix=shared_prefix,
        )
        encoders.append(randomize_(encoder.to(dtype)).requires_grad_(False))
    return encoders


def embeddings_and_context_gradients(encoder, tokens, contexts, weights):
    """B×K×C embeddings and the gradient of Σ weights·embeddings with respect to the contexts."""
    contexts = contexts.detach().requires_grad_(True)
    embeddings = encoder(tokens, contexts)
    (gradient,) = torch.autograd.grad((weights * embeddings).sum(), contexts)
    return embeddings, gradient


# ----------------------------------------------------------------------------- text encoder


@pytest.mark.parametrize("batch", [1, 3], ids=["shared contexts", "per-image contexts"])
def test_shared_prefix_gives_the_plain_embeddings_and_context_gradients_in_float64(batch):
    shared, plain = text_encoders()
    tokens = tokenize_class_names(CLASS_NAMES)
    assert len(set(tokens.argmax(dim=1).tolist())) == 3  # EOT at three different positions
    generator = torch.Generator().manual_seed(1)
    contexts = torch.randn(batch, NUM_CONTEXTS, WIDTH, generator=generator, dtype=torch.float64)
    weights = torch.randn(batch, len(CLASS_NAMES), EMBED_DIM, generator=generator).double()
    found, found_grad = embeddings_and_context_gradients(shared, tokens, contexts, weights)
    expected, expected_grad = embeddings_and_context_gradients(plain, tokens, contexts, weights)
    assert found.shape == (batch, len(CLASS_NAMES), EMBED_DIM)
    assert expected_grad.abs().min() > 0  # every context entry matters
    torch.testing.assert_close(found, expected, atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(found_grad, expected_grad, atol=FLOAT64_ATOL, rtol=0)


def test_shared_prefix_gives_the_plain_embeddings_in_float32():
    shared, plain = text_encoders(torch.float32)
    tokens = tokenize_class_names(CLASS_NAMES)
    contexts = torch.randn(2, NUM_CONTEXTS, WIDTH, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(shared(tokens, contexts), plain(tokens, contexts))


def test_shared_prefix_runs_the_prefix_once_per_context_set_and_each_class_up_to_its_eot(
    monkeypatch,
):
    shared, _ = text_encoders()
    tokens = tokenize_class_names(CLASS_NAMES)
    positions = []
    original = ResidualAttentionBlock.forward_causal

    def counting(block, x, past=None):
        positions.append(x.shape[:-1].numel())
        return original(block, x, past)

    monkeypatch.setattr(ResidualAttentionBlock, "forward_causal", counting)
    with torch.no_grad():
        shared(tokens, torch.randn(3, NUM_CONTEXTS, WIDTH, dtype=torch.float64))
    # suffixes up to the EOT: "wall" and "sky" 2 positions, "potted plant" 3, "chest of drawers" 4
    prefix, two, three, four = 3 * (1 + NUM_CONTEXTS), 3 * 2 * 2, 3 * 1 * 3, 3 * 1 * 4
    assert positions == [prefix, two, three, four] * LAYERS


def test_shared_prefix_rejects_prompts_that_start_with_different_tokens():
    shared, _ = text_encoders()
    tokens = tokenize_class_names(CLASS_NAMES)
    tokens[1, 0] = 123
    with pytest.raises(ValueError, match="start with one token"):
        shared(tokens, torch.zeros(1, NUM_CONTEXTS, WIDTH, dtype=torch.float64))


# ----------------------------------------------------------------------------- blocks


def causal_block():
    torch.manual_seed(0)
    mask = torch.full((7, 7), float("-inf")).triu_(1)
    return randomize_(ResidualAttentionBlock(16, 4, attn_mask=mask).double()).eval()


def test_causal_block_without_past_equals_the_masked_block():
    block = causal_block()
    x = torch.randn(3, 7, 16, dtype=torch.float64)  # N×L×D
    with torch.no_grad():
        found, (keys, values) = block.forward_causal(x)
        expected = block(x.transpose(0, 1)).transpose(0, 1)
    assert keys.shape == values.shape == (3, 4, 7, 4)  # N×H×L×d
    torch.testing.assert_close(found, expected, atol=FLOAT64_ATOL, rtol=0)


def test_causal_block_continues_a_prefix_through_its_keys_and_values():
    block = causal_block()
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    with torch.no_grad():
        expected = block(x.transpose(0, 1)).transpose(0, 1)[:, 4:]
        _, past = block.forward_causal(x[:, :4])
        found, _ = block.forward_causal(x[:, 4:], past)
        without_prefix, _ = block.forward_causal(x[:, 4:])
    torch.testing.assert_close(found, expected, atol=FLOAT64_ATOL, rtol=0)
    # negative control: the same segment without the prefix's keys and values
    assert (without_prefix - expected).abs().amax() > 1e-2


def test_transformer_with_shared_prefix_equals_the_whole_sequences():
    torch.manual_seed(0)
    mask = torch.full((7, 7), float("-inf")).triu_(1)
    transformer = randomize_(Transformer(16, 3, 4, attn_mask=mask).double()).eval()
    prefix = torch.randn(2, 4, 16, dtype=torch.float64)  # B×P×D
    suffixes = [torch.randn(2, 5, 3, 16, dtype=torch.float64), torch.randn(2, 2, 1, 16).double()]
    with torch.no_grad():
        found = transformer.forward_with_shared_prefix(prefix, suffixes)
        for group, outputs in zip(suffixes, found):
            whole = torch.cat([prefix[:, None].expand(-1, group.shape[1], -1, -1), group], dim=2)
            expected = transformer(whole.flatten(0, 1).transpose(0, 1)).transpose(0, 1)
            assert outputs.shape == group.shape
            torch.testing.assert_close(
                outputs.flatten(0, 1), expected[:, 4:], atol=FLOAT64_ATOL, rtol=0
            )


# ----------------------------------------------------------------------------- class prompts


def class_prompts():
    """(shared prefix, plain) float64 ClassTextPrompts with the same random contexts."""
    shared_encoder, plain_encoder = text_encoders()
    shared = ClassTextPrompts(shared_encoder, CLASS_NAMES, CLASS_TOKEN_LENGTH).double()
    plain = ClassTextPrompts(plain_encoder, CLASS_NAMES, CLASS_TOKEN_LENGTH).double()
    plain.load_state_dict(shared.state_dict())
    return shared, plain


def test_class_prompts_train_on_the_plain_context_gradients():
    shared, plain = class_prompts()
    weights = torch.randn(1, len(CLASS_NAMES), EMBED_DIM, dtype=torch.float64)
    for prompts in (shared, plain):
        (weights * prompts.train()()).sum().backward()
        assert all(p.grad is None for p in prompts.text_encoder.parameters())
    torch.testing.assert_close(shared.contexts.grad, plain.contexts.grad, atol=1e-10, rtol=0)


def test_class_prompts_cache_and_free_text_prompts_equal_the_plain_ones():
    shared, plain = class_prompts()
    texts = ["a dog", "tree", "a potted plant", "sky"]
    torch.testing.assert_close(shared.eval()(), plain.eval()(), atol=FLOAT64_ATOL, rtol=0)
    torch.testing.assert_close(shared.encode(texts), plain.encode(texts), atol=FLOAT64_ATOL, rtol=0)
