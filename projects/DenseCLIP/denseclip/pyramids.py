"""FPN pieces for the official (mmdet) detection necks."""

from typing import List, Sequence

import torch
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["LastLevelP6P7NoReLU", "with_score_channels"]


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
