"""DenseCLIP ViT-B/16 + RetinaNet on COCO, trained with ViTDet's ViT-B recipe.

The RetinaNet of retinanet_denseclip_r50_fpn_1x_coco.py (head, L1 box loss, COCO prompts,
score maps / τ, box-target auxiliary loss) over the plain CLIP ViT-B/16 with ViTDet's windowed
attention (14×14 windows, global attention in blocks 2, 5, 8, 11) and a simple feature pyramid
P3–P7 from the stride-16 map, which holds the 80 score channels. The recipe is ViTDet's
mask_rcnn_vitdet_b_100ep (large-scale jitter at 1024², batch 64, 100 epochs, AdamW 1e-4 with
weight decay 0.1 and layer-wise decay 0.7, mixed precision; ViTDet has no RetinaNet), started
from OpenAI's ViT-B-16.pt converted by tools/convert_clip.py; see ``common/vitdet_recipe.py``.
"""

from ..common.data.coco_detection_lsj import dataloader
from ..common.models.retinanet_denseclip_vit import model
from ..common.vitdet_recipe import lr_multiplier, optimizer, train

train.output_dir = "./output/retinanet_denseclip_vit-b_sfp_100ep_coco"
