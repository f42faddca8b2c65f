"""Detectron2 backbones around the CLIP image encoders.

``CLIPImageBackbone`` is the vanilla CLIP baseline (stage features only). ``DenseCLIPBackbone``
adds the text side: class prompts → (context decoder) → pixel-text score maps, appended to the
stage whose stride matches the dense embedding (res5 for ResNets, the stride-16 level for ViT,
the single map of the detection ViT). Neither knows anything about losses: the score map and
text embeddings are returned beside the stage features (keys ``"score_map"`` and
``"text_embeddings"``) for the meta-architectures; the pyramids of :mod:`denseclip.pyramids`
pass them through.
"""

from typing import Dict, Optional, Sequence

import torch
from torch import nn

from detectron2.modeling import BACKBONE_REGISTRY, Backbone

from .clip import STAGES, tokenize_class_names
from .pre_prompting import PreModelPrompting
from .prompting import ClassTextPrompts, ContextDecoder, score_maps

__all__ = ["CLIPImageBackbone", "DenseCLIPBackbone"]


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
