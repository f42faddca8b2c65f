"""DenseCLIP RN50 + Mask R-CNN for COCO (the official mask_rcnn_denseclip_r50_fpn_1x_coco model).

detectron2's Mask R-CNN FPN (``common/models/mask_rcnn_fpn.py``) over the DenseCLIP RN50
backbone of the RetinaNet config (input resolution 1344, cropped positional embedding, COCO
prompts, score maps / τ joining C5: the P5 lateral reads 2048 + 80 channels). P2–P6, P6 by
max-pooling P5, as mmdet's neck with ``num_outs=5``. Detectron2's inference: the COCO configs
set mmdet 2.17's (``mmdet_inference.py``).
"""

from detectron2.model_zoo import get_config

from denseclip.meta_arch import DenseCLIPGeneralizedRCNN
from denseclip.pyramids import FPNWithSideOutputs

from .retinanet_denseclip import model as _retinanet

model = get_config("common/models/mask_rcnn_fpn.py").model
model._target_ = DenseCLIPGeneralizedRCNN
model.backbone._target_ = FPNWithSideOutputs
model.backbone.bottom_up = _retinanet.backbone.bottom_up
model.backbone.bottom_up.out_features = ["res2", "res3", "res4", "res5"]
model.backbone.in_features = ["res2", "res3", "res4", "res5"]
model.roi_heads.num_classes = _retinanet.num_classes
model.tau = _retinanet.tau
model.aux_loss_weight = _retinanet.aux_loss_weight
model.pixel_mean = _retinanet.pixel_mean
model.pixel_std = _retinanet.pixel_std
model.input_format = _retinanet.input_format
