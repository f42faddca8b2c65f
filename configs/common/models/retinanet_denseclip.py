"""DenseCLIP RN50 + RetinaNet for COCO (the official retinanet_denseclip_r50_fpn_1x_coco model).

detectron2's RetinaNet (``common/models/retinanet.py``) over the DenseCLIP RN50 backbone of the
ADE20K configs, changed as the official detection code has it: CLIP input resolution 1344 with
the attention pool's positional embedding cropped (not resized) to the feature map, mmdet's 80
COCO names as prompts, and the score maps divided by τ before they join C5 — so the P5 lateral
and the P6 conv read 2048 + 80 channels. mmdet's RetinaNet neck and loss: P3–P7 with P6 from
C5 and no ReLU before P7, L1 box regression loss. Detectron2's inference: the COCO configs
set mmdet 2.17's (``mmdet_inference.py``).
"""

from detectron2.config import LazyCall as L
from detectron2.model_zoo import get_config

from denseclip.data import COCO_CLASSES
from denseclip.meta_arch import DenseCLIPRetinaNet
from denseclip.pyramids import FPNWithSideOutputs, LastLevelP6P7NoReLU, with_score_channels

from .denseclip_fpn import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD
from .denseclip_fpn import model as _segmentor

TAU = 0.07

model = get_config("common/models/retinanet.py").model
model._target_ = DenseCLIPRetinaNet
model.backbone._target_ = FPNWithSideOutputs
model.backbone.bottom_up = _segmentor.backbone.bottom_up
model.backbone.bottom_up.image_encoder.update(input_resolution=1344, pos_embed_resize="crop")
model.backbone.bottom_up.prompts.class_names = COCO_CLASSES
model.backbone.bottom_up.score_scale = 1 / TAU  # detection concatenates s / τ
model.backbone.bottom_up.out_features = ["res3", "res4", "res5"]
model.backbone.top_block = L(LastLevelP6P7NoReLU)(
    in_channels=L(with_score_channels)(
        channels=2048, class_names="${...bottom_up.prompts.class_names}"
    ),
    out_channels="${..out_channels}",
)
model.num_classes = len(COCO_CLASSES)
model.smooth_l1_beta = 0.0  # mmdet's L1Loss (detectron2's RetinaNet default: smooth L1, 0.1)
model.tau = TAU
model.aux_loss_weight = 1.0
model.pixel_mean = CLIP_PIXEL_MEAN
model.pixel_std = CLIP_PIXEL_STD
model.input_format = "RGB"
