"""CLIP ViT-B/16 + RetinaNet baseline on COCO: retinanet_denseclip_vit-b_sfp_100ep_coco.py
without the text side (no ln_post / proj, no score maps, no auxiliary loss), same recipe."""

from detectron2.modeling import RetinaNet

from ..common.data.coco_detection_lsj import dataloader
from ..common.models.clip_baseline import as_clip_baseline
from ..common.models.retinanet_denseclip_vit import model
from ..common.vitdet_recipe import lr_multiplier, optimizer, train

as_clip_baseline(model, RetinaNet)
train.output_dir = "./output/retinanet_clip_vit-b_sfp_100ep_coco"
