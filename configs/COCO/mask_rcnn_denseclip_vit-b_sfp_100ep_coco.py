"""DenseCLIP ViT-B/16 + Mask R-CNN on COCO, trained with ViTDet's ViT-B recipe.

The model is detectron2's ViTDet Mask R-CNN (windowed attention: 14×14 windows, global
attention in blocks 2, 5, 8, 11; simple feature pyramid from the stride-16 map) over the plain
CLIP ViT-B/16 with DenseCLIP's text side: the 80 score maps / τ join the stride-16 map, and the
box-target auxiliary loss (weight 1) trains them. The recipe is ViTDet's mask_rcnn_vitdet_b_100ep
(large-scale jitter at 1024², batch 64, 100 epochs, AdamW 1e-4 with weight decay 0.1 and
layer-wise decay 0.7, mixed precision), started from OpenAI's ViT-B-16.pt converted by
tools/convert_clip.py (``train.init_checkpoint=...``); see ``common/vitdet_recipe.py``.
Set ``model.backbone.bottom_up.image_encoder.use_act_checkpoint=True`` to trade compute for
memory.
"""

from ..common.data.coco_instance_lsj import dataloader
from ..common.models.mask_rcnn_denseclip_vit import model
from ..common.vitdet_recipe import lr_multiplier, optimizer, train

train.output_dir = "./output/mask_rcnn_denseclip_vit-b_sfp_100ep_coco"
