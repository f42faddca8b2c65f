"""mmcv's poly learning-rate policy with linear warm-up, over ``train.max_iter`` iterations."""

from detectron2.config import LazyCall as L

from denseclip.solver import PolyLRWithWarmup

poly_with_warmup = L(PolyLRWithWarmup)(
    max_iter="${train.max_iter}", power=0.9, min_lr=1e-6, warmup_iters=1500, warmup_ratio=1e-6
)
