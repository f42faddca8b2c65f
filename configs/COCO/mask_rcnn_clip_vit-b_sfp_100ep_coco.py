"""CLIP ViT-B/16 + Mask R-CNN baseline on COCO: mask_rcnn_denseclip_vit-b_sfp_100ep_coco.py
without the text side (no ln_post / proj, no score maps, no auxiliary loss), same recipe."""

from detectron2.modeling import GeneralizedRCNN

from ..common.data.coco_instance_lsj import dataloader
from ..common.models.clip_baseline import as_clip_baseline
from ..common.models.mask_rcnn_denseclip_vit import model
from ..common.vitdet_recipe import lr_multiplier, optimizer, train

as_clip_baseline(model, GeneralizedRCNN)
train.output_dir = "./output/mask_rcnn_clip_vit-b_sfp_100ep_coco"
