"""DenseCLIP ViT-B/16 + Mask R-CNN: detectron2's ViTDet Mask R-CNN (``common/models/
mask_rcnn_vitdet.py``: simple feature pyramid P2–P6 from the stride-16 map, two-conv RPN head,
4conv1fc box head and LayerNorm in the RoI heads' convolutions) over the DenseCLIP backbone of
``mask_rcnn_denseclip.py`` (COCO prompts, score maps / τ, auxiliary loss) with the plain CLIP
ViT-B/16 of ``clip_vitdet.py``. The 80 score channels join the stride-16 map before the pyramid.
"""

from detectron2.model_zoo import get_config

from .clip_vitdet import use_clip_vitdet, vitdet_b16
from .mask_rcnn_denseclip import model

_vitdet = get_config("common/models/mask_rcnn_vitdet.py").model
_vitdet.roi_heads.num_classes = model.roi_heads.num_classes  # COCO's 80
model.proposal_generator = _vitdet.proposal_generator
model.roi_heads = _vitdet.roi_heads
model.backbone.bottom_up.prompts.text_encoder.embed_dim = 512  # ViT-B/16's joint space
use_clip_vitdet(
    model,
    vitdet_b16,
    scale_factors=_vitdet.backbone.scale_factors,
    top_block=_vitdet.backbone.top_block,
)
