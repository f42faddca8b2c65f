"""The CLIP baseline of a DenseCLIP detector config (paper Tables 3, 4; the official *_clip_*
models): detectron2's meta-architecture (or its mmdet-style subclass) and FPN (ViT: simple
feature pyramid) over the CLIP image encoder alone, without the attention pool (ViT: ``ln_post``
and ``proj``), the text side, the score maps and the auxiliary loss."""

from detectron2.config import LazyCall as L
from detectron2.modeling import FPN

from denseclip.backbone import CLIPImageBackbone
from denseclip.clip import CLIPResNet, CLIPViTDet


def as_clip_baseline(model, meta_arch):
    """Turns ``model`` (a DenseCLIP RetinaNet / Mask R-CNN config) into its CLIP baseline with
    ``meta_arch`` (``MMDetStyleRetinaNet`` / ``MMDetStyleGeneralizedRCNN``, which keep the
    inference switches of ``model``). The CLIP ResNet keeps its depth, width, input resolution,
    activation checkpointing and output stages; a top block reading C5 (RetinaNet's P6) loses
    the score channels. A plain CLIP ViT (``CLIPViTDet``) keeps all its settings and its simple
    feature pyramid (whose state-dict names match converted CLIP files)."""
    bottom_up = model.backbone.bottom_up
    encoder = bottom_up.image_encoder
    model._target_ = meta_arch
    del model.tau, model.aux_loss_weight
    if encoder._target_ is CLIPViTDet:
        encoder.with_embeddings = False
        model.backbone.bottom_up = L(CLIPImageBackbone)(
            image_encoder=encoder, out_features=list(bottom_up.out_features)
        )
        return
    model.backbone._target_ = FPN
    model.backbone.bottom_up = L(CLIPImageBackbone)(
        image_encoder=L(CLIPResNet)(
            layers=list(encoder.layers),
            width=encoder.width,
            input_resolution=encoder.input_resolution,
            with_attention_pool=False,
            use_act_checkpoint=encoder.use_act_checkpoint,
        ),
        out_features=list(bottom_up.out_features),
    )
    if "in_channels" in model.backbone.top_block:
        model.backbone.top_block.in_channels = encoder.width * 32  # res5 channels
