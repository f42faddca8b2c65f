"""The vision-language prompting switch of the paper's Table 2, for a ``DenseCLIPBackbone`` node.

``set_prompting(model.backbone.bottom_up, mode)`` with mode
  - "post": post-model prompting, the context decoder refines the text embeddings after the text
    encoder (DenseCLIP, Table 2 row 5; the default of every DenseCLIP config);
  - "pre": pre-model prompting (paper Eq. 4), visual contexts decoded from [z̄, z] replace the
    learnable contexts at the text encoder's input, which then runs for every image (row 4);
  - "none": language-domain prompting only, learnable contexts and no visual context (row 3).
The decoders read their widths from the text encoder node by interpolation, so a size change of
the text encoder made afterwards (``use_tiny``, ``use_rn101``) reaches them.
"""

from detectron2.config import LazyCall as L

from denseclip.pre_prompting import PreModelPrompting
from denseclip.prompting import ContextDecoder

PROMPTING_MODES = ("post", "pre", "none")

_TEXT_ENCODER = "${..prompts.text_encoder"  # seen from a decoder node under the backbone node


def set_prompting(bottom_up, mode: str, **decoder_args):
    """Switches ``bottom_up`` (a ``DenseCLIPBackbone`` config node) to prompting ``mode``.

    ``decoder_args`` override the decoder's defaults: ``ContextDecoder`` width 256, 4 heads,
    3 layers (the official one); ``PreModelPrompting`` width 256, 4 heads, 6 layers (our choice:
    the paper gives no size, these give its 116.9 M parameters); dropout 0.1 for both.
    """
    if mode not in PROMPTING_MODES:
        raise ValueError(f"prompting mode {mode!r}: expected one of {PROMPTING_MODES}")
    if decoder_args and mode == "none":
        raise ValueError(f"prompting 'none' has no decoder to size, got {sorted(decoder_args)}")
    joint_dim = _TEXT_ENCODER + ".embed_dim}"  # z and t share CLIP's joint space
    bottom_up.context_decoder = None
    bottom_up.pre_model_prompting = None
    if mode == "post":
        bottom_up.context_decoder = L(ContextDecoder)(
            visual_dim=joint_dim, width=256, num_heads=4, num_layers=3, dropout=0.1
        )
        bottom_up.context_decoder.update(decoder_args)
    elif mode == "pre":
        bottom_up.pre_model_prompting = L(PreModelPrompting)(
            visual_dim=joint_dim,
            context_width=_TEXT_ENCODER + ".width}",  # contexts are text-encoder input tokens
            num_contexts=8,  # text_encoder.context_length 13 - prompts.class_token_length 5
            width=256,
            num_heads=4,
            num_layers=6,
            dropout=0.1,
        )
        bottom_up.pre_model_prompting.update(decoder_args)
