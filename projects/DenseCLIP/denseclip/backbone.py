"""Detectron2 backbones around the CLIP image encoders.

``CLIPImageBackbone`` is the vanilla CLIP baseline (stage features only). ``DenseCLIPBackbone``
adds the text side: class prompts → (context decoder) → pixel-text score maps, appended to the
stage whose stride matches the dense embedding (res5 for ResNets, the stride-16 level for ViT,
the single map of the detection ViT). Neither knows anything about losses: the score map and
text embeddings are returned beside the stage features (keys ``"score_map"`` and
``"text_embeddings"``) for the meta-architectures. ``FPNWithSideOutputs`` and
``SimpleFeaturePyramidWithSideOutputs`` are detectron2's FPN (with mmseg's top-down sizes) and
ViTDet's simple feature pyramid that pass those two entries through.
"""

from typing import Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.modeling import BACKBONE_REGISTRY, FPN, Backbone, SimpleFeaturePyramid

from .clip import tokenize_class_names
from .pre_prompting import PreModelPrompting
from .prompting import ClassTextPrompts, ContextDecoder, score_maps

__all__ = [
    "CLIPImageBackbone",
    "DenseCLIPBackbone",
    "FPNWithSideOutputs",
    "SIDE_OUTPUTS",
    "SimpleFeaturePyramidWithSideOutputs",
]

SIDE_OUTPUTS = ("score_map", "text_embeddings")
STAGES = ("res2", "res3", "res4", "res5")


class _StageBackbone(Backbone):
    """Exposes an image encoder's ``res2..res5`` outputs as a detectron2 Backbone.

    The encoder returns a dict holding the stage features and declares ``stage_channels`` and
    ``stage_strides`` (see :mod:`denseclip.clip`).
    """

    def __init__(self, image_encoder: nn.Module, out_features: Sequence[str] = STAGES):
        super().__init__()
        unknown = set(out_features) - set(image_encoder.stage_channels)
        if unknown:
            raise ValueError(
                f"out_features {sorted(unknown)} not produced by {type(image_encoder).__name__}; "
                f"it has {sorted(image_encoder.stage_channels)}"
            )
        self.image_encoder = image_encoder
        self._out_features = list(out_features)
        self._out_feature_channels = {f: image_encoder.stage_channels[f] for f in out_features}
        self._out_feature_strides = {f: image_encoder.stage_strides[f] for f in out_features}

    @property
    def size_divisibility(self) -> int:
        return 32


@BACKBONE_REGISTRY.register()
class CLIPImageBackbone(_StageBackbone):
    """The CLIP image encoder alone (the paper's "CLIP" baselines).

    Args:
        image_encoder: a :mod:`denseclip.clip` image encoder.
        out_features: stage names to return.
    """

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W normalised images → {stage: B×C_s×H/s×W/s}."""
        features = self.image_encoder(x)
        return {f: features[f] for f in self._out_features}


@BACKBONE_REGISTRY.register()
class DenseCLIPBackbone(_StageBackbone):
    """CLIP image encoder + language-guided score maps (paper §3.2–3.3).

    Args:
        image_encoder: a :mod:`denseclip.clip` image encoder that also returns
            ``global_embedding`` (B×C) and ``dense_embedding`` (B×C×h×w).
        prompts: the class prompts and the (frozen) text encoder.
        context_decoder: post-model prompting; ``None`` uses the language prompts alone.
        pre_model_prompting: pre-model prompting (paper Eq. 4, Table 2), instead of a context
            decoder: per-image visual contexts replace the learnable contexts at the text
            encoder's input, which then runs for every image. See :attr:`prompting`.
        score_scale: factor applied to the score map before concatenation (1 for segmentation,
            1/τ for detection, as in the official code).
        gamma_init: initial value of the per-channel residual weight γ.
        score_concat_feature: stage receiving the K score channels; by default the stage whose
            stride equals the dense embedding's.
        out_features: stage names to return.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompts: ClassTextPrompts,
        context_decoder: Optional[ContextDecoder] = None,
        *,
        pre_model_prompting: Optional[PreModelPrompting] = None,
        score_scale: float = 1.0,
        gamma_init: float = 1e-4,
        score_concat_feature: Optional[str] = None,
        out_features: Sequence[str] = STAGES,
    ):
        super().__init__(image_encoder, out_features)
        self.prompts = prompts
        self.context_decoder = context_decoder
        self.pre_model_prompting = pre_model_prompting
        if pre_model_prompting is not None:
            _check_pre_model_prompting(pre_model_prompting, prompts, context_decoder)
            # replaced by the visual contexts: frozen, so that DDP sees no unused trainable weight
            prompts.contexts.requires_grad_(False)
        if context_decoder is not None:
            self.gamma = nn.Parameter(torch.full((image_encoder.embed_dim,), gamma_init))
        self.score_scale = score_scale
        if score_concat_feature is None:
            stride = image_encoder.dense_embedding_stride
            score_concat_feature = next(
                f for f in self._out_features if self._out_feature_strides[f] == stride
            )
        self.score_concat_feature = score_concat_feature
        self._out_feature_channels[score_concat_feature] += prompts.num_classes

    @property
    def prompting(self) -> str:
        """Vision-language prompting (Table 2): "post" (context decoder), "pre" (pre-model
        prompting) or "none" (language-domain prompting only)."""
        if self.pre_model_prompting is not None:
            return "pre"
        return "none" if self.context_decoder is None else "post"

    def _pre_model_text(self, texts: Optional[Sequence[str]], visual_context: torch.Tensor):
        """texts: T prompts (None: the K class prompts), visual_context: B×(1+hw)×C → B×T×C,
        the text encoder run on each image's visual contexts v_pre."""
        if not isinstance(self.prompts, ClassTextPrompts):
            raise RuntimeError("pre-model prompting needs the text encoder; prompts are deployed")
        tokens = self.prompts.class_tokens
        if texts is not None:
            tokens = tokenize_class_names(texts, tokens.shape[1]).to(tokens.device)
        return self.prompts.text_encoder(tokens, self.pre_model_prompting(visual_context))

    def text_embeddings(self, global_embedding: torch.Tensor, dense_embedding: torch.Tensor):
        """Class text embeddings t, refined by the visual context when a decoder exists.

        Args:
            global_embedding: B×C (z̄); dense_embedding: B×C×h×w (z).
        Returns:
            B×K×C, or 1×K×C when there is no context decoder nor pre-model prompting (shared
            by the batch).
        """
        if self.pre_model_prompting is not None:
            visual_context = _visual_context(global_embedding, dense_embedding)
            return self._pre_model_text(None, visual_context)
        text = self.prompts()
        if self.context_decoder is None:
            return text
        visual_context = _visual_context(global_embedding, dense_embedding)
        text = text.expand(dense_embedding.shape[0], -1, -1)
        return text + self.gamma * self.context_decoder(text, visual_context)

    def text_score_maps(self, x: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Score maps of any prompts (open vocabulary), with the learned contexts and the context
        decoder conditioned on each image: the prompts are decoded beside the K class prompts
        (:meth:`ContextDecoder.forward_queries`), so a prompt equal to a class name gives that
        class's ``score_map`` channel and each prompt's map is independent of the others.

        Args:
            x: B×3×H×W normalised images; texts: T prompts (each ≤ 3 BPE tokens by default).
        Returns:
            B×T×h×w raw cosine scores at the dense embedding's stride.
        """
        features = self.image_encoder(x)
        global_embedding, dense = features["global_embedding"], features["dense_embedding"]
        if self.pre_model_prompting is not None:
            visual_context = _visual_context(global_embedding, dense)
            return score_maps(dense, self._pre_model_text(texts, visual_context))
        queries = self.prompts.encode(texts)
        if self.context_decoder is not None:
            batch = dense.shape[0]
            classes = self.prompts().expand(batch, -1, -1)
            queries = queries.expand(batch, -1, -1)
            update = self.context_decoder.forward_queries(
                classes, queries, _visual_context(global_embedding, dense)
            )
            queries = queries + self.gamma * update
        return score_maps(dense, queries)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → stage features (the score stage with K extra channels) and
        ``score_map`` (B×K×h×w raw cosine scores), ``text_embeddings`` (B×K×C or 1×K×C)."""
        features = self.image_encoder(x)
        dense = features["dense_embedding"]
        text = self.text_embeddings(features["global_embedding"], dense)
        scores = score_maps(dense, text)
        outputs = {f: features[f] for f in self._out_features}
        concat = self.score_concat_feature
        outputs[concat] = torch.cat([outputs[concat], scores * self.score_scale], dim=1)
        outputs["score_map"] = scores
        outputs["text_embeddings"] = text
        return outputs


def _check_pre_model_prompting(
    pre_model_prompting: PreModelPrompting,
    prompts: ClassTextPrompts,
    context_decoder: Optional[ContextDecoder],
) -> None:
    """Pre-model prompting excludes a context decoder and must fit the text encoder's contexts."""
    if context_decoder is not None:
        raise ValueError("give a context_decoder (post-model) or pre_model_prompting, not both")
    expected = prompts.contexts.shape[1:]
    found = (pre_model_prompting.num_contexts, pre_model_prompting.context_width)
    if tuple(expected) != found:
        raise ValueError(
            f"pre_model_prompting makes {found[0]} contexts of width {found[1]}; the text "
            f"encoder takes {expected[0]} of width {expected[1]}"
        )


def _visual_context(global_embedding: torch.Tensor, dense_embedding: torch.Tensor) -> torch.Tensor:
    """z̄: B×C and z: B×C×h×w → the context decoder's memory [z̄, z]: B×(1+hw)×C."""
    tokens = dense_embedding.flatten(2).transpose(1, 2)
    return torch.cat([global_embedding[:, None], tokens], dim=1)


class _SideOutputsPassThrough:
    """Mixed in before a detectron2 feature pyramid: its output also holds the bottom-up's
    ``score_map`` and ``text_embeddings`` (kept by a forward hook on the bottom-up, registered
    under the name ``bottom_up``), so that meta-architectures can supervise them. Detectron2
    heads index the pyramid by name, so the extra entries are invisible to them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._side_outputs: Dict[str, torch.Tensor] = {}
        self.bottom_up.register_forward_hook(self._keep_side_outputs)

    def _keep_side_outputs(self, module, inputs, outputs):
        self._side_outputs = {k: outputs[k] for k in SIDE_OUTPUTS if k in outputs}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        pyramid = super().forward(x)
        pyramid.update(self._side_outputs)
        self._side_outputs = {}
        return pyramid


class FPNWithSideOutputs(FPN):
    """detectron2's :class:`FPN` with mmseg / mmdet's top-down path, also returning the
    bottom-up's ``score_map`` and ``text_embeddings`` so that meta-architectures can supervise
    them.

    Top-down, each coarser level is upsampled (nearest) to the size of the finer lateral, as
    mmseg's and mmdet's FPN do, instead of by exactly 2× (detectron2): the strided layers of an
    encoder round odd sizes their own way (the CLIP ResNet turns a 341-pixel side into 85, 42,
    21, 10 at strides 4..32), which 2× cannot follow. Where every level is twice the next (inputs
    whose sides are multiples of the coarsest stride, as detectron2 pads its batches) both are
    the same operation and the outputs equal :class:`FPN`'s bit for bit.

    Takes exactly :class:`FPN`'s arguments. Detectron2 heads index the pyramid by name, so the
    extra entries are invisible to them.
    """

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → {"p2".."p5" (and the top block's levels): B×out_channels×h×w} plus the
        bottom-up's side outputs."""
        bottom_up_features = self.bottom_up(x)
        # lateral_convs and output_convs are in top-down order (coarsest first), as in FPN
        laterals = [
            conv(bottom_up_features[f])
            for conv, f in zip(self.lateral_convs, reversed(self.in_features))
        ]
        prev_features = laterals[0]
        results = [self.output_convs[0](prev_features)]
        for lateral_features, output_conv in zip(laterals[1:], self.output_convs[1:]):
            top_down_features = F.interpolate(
                prev_features, size=lateral_features.shape[-2:], mode="nearest"
            )
            prev_features = lateral_features + top_down_features
            if self._fuse_type == "avg":
                prev_features = prev_features / 2
            results.insert(0, output_conv(prev_features))
        if self.top_block is not None:
            name = self.top_block.in_feature
            if name in bottom_up_features:
                top_block_input = bottom_up_features[name]
            else:
                top_block_input = results[self._out_features.index(name)]
            results.extend(self.top_block(top_block_input))
        pyramid = dict(zip(self._out_features, results))
        pyramid.update({k: bottom_up_features[k] for k in SIDE_OUTPUTS if k in bottom_up_features})
        return pyramid


class SimpleFeaturePyramidWithSideOutputs(_SideOutputsPassThrough, SimpleFeaturePyramid):
    """detectron2's :class:`SimpleFeaturePyramid` (ViTDet), also returning the bottom-up's
    ``score_map`` and ``text_embeddings``.

    Takes :class:`SimpleFeaturePyramid`'s arguments, with the bottom-up called ``bottom_up`` as
    in :class:`FPN` (detectron2 calls it ``net``; ``self.net`` still returns it). So config
    paths and state-dict names are ``backbone.bottom_up.*`` for either pyramid: converted CLIP
    files (:mod:`denseclip.checkpoint`), ``bottom_up.image_encoder.`` optimizer rules and
    overrides apply unchanged.

    ``size_divisibility`` is the stride of the coarsest level made from the bottom-up (32):
    detectron2's class spells the key of its ``padding_constraints`` "size_divisiblity", so
    ``ImageList`` never sees it and only ``square_pad`` (ViTDet: 1024) pads the batch; here
    ``square_pad=0`` pads images of any size to multiples of 32.
    """

    def __init__(self, bottom_up: Backbone, **kwargs):
        super().__init__(bottom_up, **kwargs)

    def __setattr__(self, name, value):
        super().__setattr__("bottom_up" if name == "net" else name, value)

    @property
    def net(self) -> Backbone:
        return self.bottom_up

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    @property
    def padding_constraints(self) -> Dict[str, int]:
        return {"size_divisibility": self._size_divisibility, "square_size": self._square_pad}
