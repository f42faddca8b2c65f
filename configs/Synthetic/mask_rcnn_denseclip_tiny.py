"""A tiny DenseCLIP Mask R-CNN that trains on the built-in synthetic detection dataset on 2 CPU
cores.

The COCO model (mask_rcnn_denseclip_r50_fpn_1x_coco.py) over the tiny backbone of
retinanet_denseclip_tiny.py, with its data and schedule plus the instance masks (RLE, hence
``bitmask``): 64-channel FPN, narrow heads, anchors half the COCO sizes, fewer sampled anchors,
proposals and RoIs for 128x128 images with 1–4 shapes.
"""

from detectron2.layers import ShapeSpec

from ..common.models.mask_rcnn_denseclip import model
from .retinanet_denseclip_tiny import dataloader, lr_multiplier, optimizer, train
from .retinanet_denseclip_tiny import model as _retinanet

model.backbone.bottom_up = _retinanet.backbone.bottom_up
model.backbone.bottom_up.out_features = ["res2", "res3", "res4", "res5"]
model.backbone.out_channels = 64
model.proposal_generator.update(
    batch_size_per_image=64, pre_nms_topk=(600, 300), post_nms_topk=(150, 100)
)
model.proposal_generator.head.in_channels = 64
model.proposal_generator.anchor_generator.sizes = [[16], [32], [64], [128], [256]]
model.roi_heads.update(num_classes=_retinanet.num_classes, batch_size_per_image=64)
model.roi_heads.box_head.update(
    input_shape=ShapeSpec(channels=64, height=7, width=7), fc_dims=[256, 256]
)
model.roi_heads.box_predictor.input_shape = ShapeSpec(channels=256)
model.roi_heads.mask_head.update(
    input_shape=ShapeSpec(channels=64, height=14, width=14), conv_dims=[64, 64, 64]
)

dataloader.train.mapper.update(use_instance_mask=True, instance_mask_format="bitmask")
train.output_dir = "./output/synthetic/mask_rcnn_denseclip_tiny"
