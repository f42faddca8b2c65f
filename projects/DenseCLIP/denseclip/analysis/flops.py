"""FLOPs and parameters of a model as the paper counts them (Table 1).

fvcore's ``FlopCountAnalysis`` (through detectron2's wrapper, which takes the model's list-of-dict
inputs) on one H×W image, model in eval mode, whole-image inference (the official ``get_flops.py``
traces ``forward_dummy`` = ``encode_decode`` of the whole image). fvcore counts one fused
multiply-add as one flop.

Two adjustments make the count complete and match the paper's protocol:

- Attention. On recent PyTorch, ``nn.MultiheadAttention`` runs its two attention matmuls inside
  ``aten::scaled_dot_product_attention`` (or the fused ``aten::_native_multi_head_attention``, or
  ``aten::baddbmm`` when it returns weights under a mask), which fvcore does not count.
  :data:`ATTENTION_HANDLES` counts them.
- Text encoder. In eval mode :class:`~denseclip.prompting.ClassTextPrompts` caches the class
  embeddings; the caches are filled before tracing, so the cached embeddings are constants of the
  traced graph and the text encoder costs 0 flops. Its parameters are left out of the parameter
  count when, as here, it does not run at inference. Where it does run (pre-model prompting),
  every prompt is counted as one whole sequence (``shared_prefix`` off), as the paper counts it;
  the shared-prefix encoding that the models run by default does about a third of that work
  (609 instead of 1950 token positions for the 150 ADE20K prompts).
"""

import contextlib
import typing
from collections import Counter
from dataclasses import dataclass
from math import prod
from typing import Any, Dict, List, Tuple

import torch
from fvcore.nn.jit_handles import bmm_flop_jit, get_shape
from torch import nn

from detectron2.utils.analysis import FlopCountAnalysis, parameter_count

from ..clip import CLIPTextEncoder
from ..prompting import ClassTextPrompts

__all__ = [
    "ATTENTION_HANDLES",
    "Complexity",
    "InferenceFlopCountAnalysis",
    "fvcore2021_conv_flop_jit",
]

#: Name of the traced model inside detectron2's ``TracingAdapter`` (prefix of analysis names).
_TRACED_MODEL = "model"


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``scaled_dot_product_attention(query (…, L, E), key (…, S, E), value (…, S, Ev))``:
    Q·Kᵀ and softmax·V, ``prod(…)·L·S·(E + Ev)`` multiply-adds. Masks and causality are ignored,
    as fvcore ignores them for a masked ``bmm``."""
    query, key, value = (get_shape(v) for v in inputs[:3])
    return prod(query[:-1]) * key[-2] * (query[-1] + value[-1])


def native_mha_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``_native_multi_head_attention(query (…, L, E), key (…, S, E), value, …)``, the fused
    inference path of a batch-first ``nn.MultiheadAttention``: the q, k, v and output
    projections (E² per token each) and the two attention matmuls (``…·L·S·2E``)."""
    query, key = get_shape(inputs[0]), get_shape(inputs[1])
    embed_dim, queries, keys = query[-1], prod(query[:-1]), prod(key[:-1])
    projections = 2 * (queries + keys) * embed_dim * embed_dim
    return projections + queries * key[-2] * 2 * embed_dim


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``baddbmm(input, batch1, batch2, …)``: the ``bmm`` of batch1 and batch2."""
    return bmm_flop_jit(inputs[1:3], outputs)


#: fvcore op handles for the attention ops its defaults leave out.
ATTENTION_HANDLES = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
    "aten::baddbmm": baddbmm_flop_jit,
}


def fvcore2021_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> typing.Counter[str]:
    """``aten::_convolution`` as fvcore counted it until its commit f70407e (27 October 2021),
    the fvcore of the paper's Table 1: batch × output positions × C_out × ``weight.shape[1]`` ×
    kernel. For a convolution that is today's count; a transposed convolution, though, is counted
    over its output positions (and with C_out² instead of C_in·C_out): 4× today's count for the
    2×2 stride-2 deconvolutions of the ViT pyramid."""
    x, weight, out = get_shape(inputs[0]), get_shape(inputs[1]), get_shape(outputs[0])
    return Counter({"conv": x[0] * prod(out[2:]) * out[1] * weight[1] * prod(weight[2:])})


def _text_encoder_names(model: nn.Module) -> List[str]:
    """Names of the text encoders of every :class:`ClassTextPrompts` in the model."""
    return [
        f"{name}.text_encoder"
        for name, module in model.named_modules()
        if isinstance(module, ClassTextPrompts)
    ]


@contextlib.contextmanager
def _counting_mode(model: nn.Module):
    """Eval mode, whole-image inference (``test_mode = "whole"`` for models that also have
    slide inference), text encoders without shared prefix, warm text-embedding caches; restores
    the model's state on exit.

    The mode is switched only when needed: ``ClassTextPrompts.train()`` drops its cache."""
    was_training, test_mode = model.training, getattr(model, "test_mode", None)
    if was_training:
        model.eval()
    if test_mode is not None:
        model.test_mode = "whole"
    shared = [m for m in model.modules() if isinstance(m, CLIPTextEncoder) and m.shared_prefix]
    for encoder in shared:
        encoder.shared_prefix = False
    try:
        for prompts in model.modules():
            if isinstance(prompts, ClassTextPrompts):
                prompts()
        yield
    finally:
        for encoder in shared:
            encoder.shared_prefix = True
        if test_mode is not None:
            model.test_mode = test_mode
        if was_training:
            model.train()


@dataclass(frozen=True)
class Complexity:
    """FLOPs and parameters of a model, as the paper counts them.

    Attributes:
        flops: fvcore flops of the traced inference (one fused multiply-add = one flop).
        attention_flops: the part counted by :data:`ATTENTION_HANDLES` (fvcore's defaults: 0).
        params: parameters, without ``excluded_params``.
        excluded_params: {name: parameter count} of the text encoders that do not run at
            inference (their output is cached).
    """

    flops: int
    attention_flops: int
    params: int
    excluded_params: Dict[str, int]

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    def summary(self) -> Dict[str, float]:
        """``{"gflops": …, "params_m": …}``."""
        return {"gflops": round(self.gflops, 3), "params_m": round(self.params_m, 3)}


class InferenceFlopCountAnalysis(FlopCountAnalysis):
    """detectron2's :class:`FlopCountAnalysis` (fvcore) of the inference of one H×W image, with
    :data:`ATTENTION_HANDLES`, in eval mode, whole-image inference and warm text caches.

    The model is traced when the object is made; fvcore keeps the results. Module names in
    :meth:`by_module`, :meth:`total` etc. start with ``"model."`` (detectron2's TracingAdapter).

    Args:
        model: a detectron2 meta-architecture (list-of-dict inputs, ``model.device``).
        image_size: (H, W) of the image (Table 1: 1024×1024).
        fvcore2021: count convolutions as the paper's fvcore did
            (:func:`fvcore2021_conv_flop_jit`); this reproduces the paper's ViT-B figures.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: Tuple[int, int] = (1024, 1024),
        fvcore2021: bool = False,
    ):
        height, width = image_size
        super().__init__(model, [{"image": torch.zeros(3, height, width, device=model.device)}])
        self.model = model
        self.set_op_handle(**ATTENTION_HANDLES)
        if fvcore2021:
            self.set_op_handle("aten::_convolution", fvcore2021_conv_flop_jit)
        self.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with _counting_mode(model):
            self.total()

    def complexity(self) -> Complexity:
        """Total flops, the attention part, and the parameters used at inference."""
        uncalled = self.uncalled_modules()
        params = parameter_count(self.model)
        excluded = {
            name: params[name]
            for name in _text_encoder_names(self.model)
            if f"{_TRACED_MODEL}.{name}" in uncalled
        }
        by_operator = self.by_operator()
        return Complexity(
            flops=int(self.total()),
            attention_flops=int(sum(by_operator[op.split("::")[1]] for op in ATTENTION_HANDLES)),
            params=params[""] - sum(excluded.values()),
            excluded_params=excluded,
        )
