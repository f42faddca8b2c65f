"""Feature pyramids over the DenseCLIP backbones, and the pieces of the official necks.

A DenseCLIP backbone returns, beside its stage features, the ``score_map`` and
``text_embeddings`` that the meta-architectures supervise (:data:`SIDE_OUTPUTS`).
:class:`SideOutputsPassThrough` adds them to the output of any detectron2 pyramid built on a
``bottom_up``; :class:`FPNWithSideOutputs` (detectron2's FPN with mmseg's top-down sizes,
:class:`LateralSizedFPN`) and :class:`SimpleFeaturePyramidWithSideOutputs` (ViTDet's pyramid)
are the two the configs use. Detectron2 heads index a pyramid by name, so the extra entries are
invisible to them.
"""

from typing import Dict, List, Sequence

import torch
from torch.nn import functional as F

from detectron2.modeling import FPN, Backbone, SimpleFeaturePyramid
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = [
    "FPNWithSideOutputs",
    "LastLevelP6P7NoReLU",
    "LateralSizedFPN",
    "SIDE_OUTPUTS",
    "SideOutputsPassThrough",
    "SimpleFeaturePyramidWithSideOutputs",
    "with_score_channels",
]

#: Outputs of a DenseCLIP backbone that are not stage features: B×K×h×w raw cosine scores and
#: the B×K×C (or 1×K×C) class text embeddings.
SIDE_OUTPUTS = ("score_map", "text_embeddings")


class SideOutputsPassThrough:
    """Mixed in before a detectron2 pyramid whose bottom-up is ``self.bottom_up``: the pyramid's
    output also holds the bottom-up's :data:`SIDE_OUTPUTS` (a baseline backbone has none).

    The pyramid's own ``forward`` is untouched: a forward hook, registered for the duration of
    one call, keeps the entries of the bottom-up's output.
    """

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → the pyramid's levels plus the bottom-up's side outputs."""
        side_outputs = {}

        def keep(module, inputs, outputs):
            side_outputs.update({k: outputs[k] for k in SIDE_OUTPUTS if k in outputs})

        handle = self.bottom_up.register_forward_hook(keep)
        try:
            pyramid = super().forward(x)
        finally:
            handle.remove()
        pyramid.update(side_outputs)
        return pyramid


class LateralSizedFPN(FPN):
    """detectron2's :class:`FPN` with mmseg's and mmdet's top-down path: each coarser level is
    upsampled (nearest) to the size of the finer lateral instead of by exactly 2×.

    The strided layers of an encoder round odd sizes their own way (the CLIP ResNet turns a
    341-pixel side into 85, 42, 21, 10 at strides 4..32), which 2× cannot follow. Where every
    level is twice the next (sides that are multiples of the coarsest stride, as detectron2 pads
    its batches) both are the same operation and the outputs equal :class:`FPN`'s bit for bit.
    Takes exactly :class:`FPN`'s arguments.
    """

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: B×3×H×W → {"p2".."p5" (and the top block's levels): B×out_channels×h×w}."""
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
        return dict(zip(self._out_features, results))


class FPNWithSideOutputs(SideOutputsPassThrough, LateralSizedFPN):
    """:class:`LateralSizedFPN` (mmseg's top-down sizes) that also returns the bottom-up's
    ``score_map`` and ``text_embeddings``. Takes exactly :class:`FPN`'s arguments."""


class SimpleFeaturePyramidWithSideOutputs(SideOutputsPassThrough, SimpleFeaturePyramid):
    """detectron2's :class:`SimpleFeaturePyramid` (ViTDet) that also returns the bottom-up's
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


class LastLevelP6P7NoReLU(LastLevelP6P7):
    """P6 = conv(C5) and P7 = conv(P6), with no ReLU in between.

    mmdet's RetinaNet neck (``add_extra_convs='on_input'``, ``relu_before_extra_convs=False``)
    feeds P6 to the P7 conv as is; detectron2's :class:`LastLevelP6P7` applies a ReLU first.
    Same arguments and parameter names (``p6``, ``p7``: 3×3 stride-2 convs) as
    :class:`LastLevelP6P7`.
    """

    def forward(self, c5: torch.Tensor) -> List[torch.Tensor]:
        """c5: B×in_channels×h×w → [P6 B×out×h/2×w/2, P7 B×out×h/4×w/4]."""
        p6 = self.p6(c5)
        return [p6, self.p7(p6)]


def with_score_channels(channels: int, class_names: Sequence[str]) -> int:
    """Channels of a backbone stage after DenseCLIP appends one score map per class.

    For configs: the input width of a module reading that stage follows ``class_names`` when a
    dataset changes them.
    """
    return channels + len(class_names)
