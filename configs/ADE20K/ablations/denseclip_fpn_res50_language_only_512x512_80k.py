"""Table 2 row 3: DenseCLIP RN50 with language-domain prompting only (42.1 mIoU, 269 G, 46.5 M).

Learnable contexts, score maps and the pixel-text loss, but no vision-to-language prompting:
the class embeddings are the same for every image (no context decoder).
"""

from ...common.models.prompting import set_prompting
from ..denseclip_fpn_res50_512x512_80k import dataloader, lr_multiplier, model, optimizer, train

set_prompting(model.backbone.bottom_up, "none")

train.output_dir = "./output/ablations/denseclip_fpn_res50_language_only_512x512_80k"
