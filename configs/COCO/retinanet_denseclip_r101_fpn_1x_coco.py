"""DenseCLIP RN101 + RetinaNet on COCO (official retinanet_denseclip_r101_fpn_1x_coco).

Same recipe as RN50; RN101's joint embedding space has 512 channels.
"""

from .retinanet_denseclip_r50_fpn_1x_coco import dataloader, lr_multiplier, model, optimizer, train

_encoder = model.backbone.bottom_up
_encoder.image_encoder.layers = [3, 4, 23, 3]
_encoder.image_encoder.output_dim = 512
_encoder.prompts.text_encoder.embed_dim = 512
_encoder.context_decoder.visual_dim = 512

train.output_dir = "./output/retinanet_denseclip_r101_fpn_1x_coco"
