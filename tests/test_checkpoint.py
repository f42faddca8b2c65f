"""Specification of ``denseclip.checkpoint``: OpenAI CLIP conversion and checkpoint loading."""

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_openai_clip

from detectron2.config import instantiate

from denseclip.checkpoint import (
    IMAGE_ENCODER_PREFIX,
    TEXT_ENCODER_PREFIX,
    DenseCLIPCheckpointer,
    adapt_positional_embeddings,
    convert_openai_clip,
    load_openai_clip_state_dict,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

IMAGE_POS = IMAGE_ENCODER_PREFIX + "attnpool.positional_embedding"
VIT_POS = IMAGE_ENCODER_PREFIX + "positional_embedding"
TEXT_POS = TEXT_ENCODER_PREFIX + "positional_embedding"


def resized_grid(embedding, side, new_side):
    """Rows 1.. of a (1 + side²)×C embedding as a side×side grid, resized bilinearly
    (align_corners=False) to new_side×new_side, back to (new_side²)×C, row-major."""
    channels = embedding.shape[1]
    grid = embedding[1:].reshape(side, side, channels).permute(2, 0, 1)[None]
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bilinear", align_corners=False)
    return grid[0].permute(1, 2, 0).reshape(new_side * new_side, channels)


# ----------------------------------------------------------------------------- convert_openai_clip


def test_visual_keys_go_to_the_image_encoder():
    weight = torch.randn(8, 3, 3, 3)
    converted, report = convert_openai_clip({"visual.conv1.weight": weight})
    assert converted == {"backbone.bottom_up.image_encoder.conv1.weight": weight}
    assert report.image == ["visual.conv1.weight"]


def test_text_keys_go_to_the_text_encoder():
    state = {
        "token_embedding.weight": torch.randn(10, 4),
        "positional_embedding": torch.randn(77, 4),
        "transformer.resblocks.0.ln_1.weight": torch.randn(4),
        "ln_final.bias": torch.randn(4),
        "text_projection": torch.randn(4, 2),
    }
    converted, report = convert_openai_clip(state)
    prefix = "backbone.bottom_up.prompts.text_encoder."
    assert converted == {prefix + key: value for key, value in state.items()}
    assert converted[prefix + "token_embedding.weight"] is state["token_embedding.weight"]
    assert sorted(report.text) == sorted(state)


def test_logit_scale_and_archive_metadata_are_skipped():
    state = {
        "visual.conv1.weight": torch.randn(1),
        "logit_scale": torch.tensor(4.6),
        "input_resolution": torch.tensor(224),
        "context_length": torch.tensor(77),
        "vocab_size": torch.tensor(49408),
    }
    converted, report = convert_openai_clip(state)
    assert list(converted) == ["backbone.bottom_up.image_encoder.conv1.weight"]
    assert sorted(report.skipped) == [
        "context_length",
        "input_resolution",
        "logit_scale",
        "vocab_size",
    ]
    assert "logit_scale" in report.summary()


def test_unknown_key_raises_key_error_naming_it():
    with pytest.raises(KeyError, match="decode_head.conv_seg.weight"):
        convert_openai_clip(
            {"visual.conv1.weight": torch.randn(1), "decode_head.conv_seg.weight": torch.randn(1)}
        )


def test_a_state_dict_without_clip_keys_is_rejected():
    with pytest.raises(KeyError):
        convert_openai_clip({"logit_scale": torch.tensor(1.0)})


def test_a_whole_openai_clip_state_dict_converts_completely():
    torch.manual_seed(0)
    state = tiny_openai_clip().state_dict()
    converted, report = convert_openai_clip(state)
    assert len(converted) == len(state) - 1
    assert report.skipped == ["logit_scale"]
    assert all(k.startswith((IMAGE_ENCODER_PREFIX, TEXT_ENCODER_PREFIX)) for k in converted)


def test_load_openai_clip_state_dict_reads_plain_state_dicts_as_float32(tmp_path):
    state = {"visual.conv1.weight": torch.randn(2, 2).half(), "logit_scale": torch.tensor(1.0)}
    plain, nested = tmp_path / "plain.pt", tmp_path / "nested.pt"
    torch.save(state, plain)
    torch.save({"state_dict": state}, nested)
    for path in (plain, nested):
        loaded = load_openai_clip_state_dict(str(path))
        assert set(loaded) == set(state)
        assert loaded["visual.conv1.weight"].dtype == torch.float32
        torch.testing.assert_close(
            loaded["visual.conv1.weight"], state["visual.conv1.weight"].float()
        )


# ----------------------------------------------------------------------------- positional embeddings


def test_image_positional_embedding_is_resized_from_7x7_to_16x16():
    torch.manual_seed(0)
    source = torch.randn(1 + 7 * 7, 6)
    adapted = adapt_positional_embeddings({IMAGE_POS: source}, {IMAGE_POS: torch.empty(257, 6)})
    result = adapted[IMAGE_POS]
    assert result.shape == (1 + 16 * 16, 6)
    assert torch.equal(result[0], source[0])
    torch.testing.assert_close(result[1:], resized_grid(source, 7, 16))


def test_image_positional_embedding_row_major_layout_is_kept():
    """A grid whose value is its row index stays constant along each resized row."""
    rows = torch.arange(4.0).repeat_interleave(4)[:, None].repeat(1, 2)  # 4×4 grid, C=2
    source = torch.cat([torch.full((1, 2), -1.0), rows])
    adapted = adapt_positional_embeddings({IMAGE_POS: source}, {IMAGE_POS: torch.empty(65, 2)})
    grid = adapted[IMAGE_POS][1:].reshape(8, 8, 2)
    assert torch.allclose(grid, grid[:, :1])  # constant along x
    assert torch.all(grid[1:, 0, 0] >= grid[:-1, 0, 0])  # increasing along y


def test_vit_positional_embedding_is_resized_too():
    torch.manual_seed(0)
    source = torch.randn(1 + 14 * 14, 4)
    adapted = adapt_positional_embeddings({VIT_POS: source}, {VIT_POS: torch.empty(1 + 40 * 40, 4)})
    torch.testing.assert_close(adapted[VIT_POS][1:], resized_grid(source, 14, 40))
    assert torch.equal(adapted[VIT_POS][0], source[0])


def test_text_positional_embedding_is_truncated_from_77_to_13_rows():
    source = torch.randn(77, 4)
    adapted = adapt_positional_embeddings({TEXT_POS: source}, {TEXT_POS: torch.empty(13, 4)})
    assert torch.equal(adapted[TEXT_POS], source[:13])


def test_matching_shapes_and_other_keys_are_left_alone():
    checkpoint = {
        IMAGE_POS: torch.randn(17, 4),
        TEXT_POS: torch.randn(13, 4),
        "backbone.bottom_up.image_encoder.conv1.weight": torch.randn(2),
        "unrelated.positional_embedding": torch.randn(5, 4),  # not in the model
    }
    model_state = {IMAGE_POS: torch.empty(17, 4), TEXT_POS: torch.empty(13, 4)}
    adapted = adapt_positional_embeddings(checkpoint, model_state)
    assert adapted.keys() == checkpoint.keys()
    assert all(adapted[k] is checkpoint[k] for k in checkpoint)


def test_the_input_checkpoint_is_not_modified():
    source = torch.randn(77, 4)
    checkpoint = {TEXT_POS: source}
    adapt_positional_embeddings(checkpoint, {TEXT_POS: torch.empty(13, 4)})
    assert checkpoint[TEXT_POS] is source


def test_a_shorter_text_embedding_is_not_padded():
    source = torch.randn(8, 4)
    adapted = adapt_positional_embeddings({TEXT_POS: source}, {TEXT_POS: torch.empty(13, 4)})
    assert adapted[TEXT_POS] is source


def test_an_image_embedding_that_is_not_one_plus_a_square_is_rejected():
    with pytest.raises(ValueError, match="square"):
        adapt_positional_embeddings(
            {IMAGE_POS: torch.randn(1 + 50, 4)}, {IMAGE_POS: torch.empty(17, 4)}
        )


# ----------------------------------------------------------------------------- checkpointer


@pytest.fixture
def clip_model_pair(tiny_config):
    """(OpenAI state dict, our tiny model with matching widths)."""
    torch.manual_seed(0)
    source = tiny_openai_clip().state_dict()
    encoder = tiny_config.model.backbone.bottom_up
    encoder.image_encoder.update(width=16, output_dim=32)  # input_resolution stays 128
    encoder.prompts.text_encoder.update(width=32, heads=2, layers=1, embed_dim=32)
    torch.manual_seed(1)
    return source, instantiate(tiny_config.model)


def test_checkpointer_loads_a_converted_openai_clip(clip_model_pair, tmp_path):
    source, model = clip_model_pair
    converted, _ = convert_openai_clip(source)
    path = tmp_path / "clip_converted.pth"
    torch.save({"model": converted}, path)

    checkpointer = DenseCLIPCheckpointer(model)
    incompatible = []
    checkpointer._log_incompatible_keys = incompatible.append
    checkpointer.load(str(path))

    (keys,) = incompatible
    encoder_prefixes = (IMAGE_ENCODER_PREFIX, TEXT_ENCODER_PREFIX)
    assert not [k for k in keys.missing_keys if k.startswith(encoder_prefixes)]
    assert keys.unexpected_keys == []
    assert keys.incorrect_shapes == []

    state = model.state_dict()
    for key, value in source.items():
        if key.startswith("visual.") and "positional_embedding" not in key:
            assert torch.equal(state[IMAGE_ENCODER_PREFIX + key[len("visual.") :]], value), key
    assert torch.equal(
        state[TEXT_ENCODER_PREFIX + "token_embedding.weight"], source["token_embedding.weight"]
    )
    assert torch.equal(state[TEXT_POS], source["positional_embedding"][:13])
    pos = source["visual.attnpool.positional_embedding"]
    assert state[IMAGE_POS].shape == (1 + 4 * 4, 512)
    assert torch.equal(state[IMAGE_POS][0], pos[0])
    torch.testing.assert_close(state[IMAGE_POS][1:], resized_grid(pos, 2, 4))


def test_checkpointer_round_trips_a_denseclip_checkpoint(tiny_config, tmp_path):
    torch.manual_seed(0)
    saved = instantiate(tiny_config.model)
    torch.manual_seed(1)
    loaded = instantiate(tiny_config.model)
    DenseCLIPCheckpointer(saved, save_dir=str(tmp_path)).save("model_final")
    DenseCLIPCheckpointer(loaded).load(str(tmp_path / "model_final.pth"))
    expected = saved.state_dict()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
