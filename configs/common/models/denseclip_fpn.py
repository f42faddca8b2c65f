"""DenseCLIP RN50 + Semantic FPN for ADE20K-150 at 512² (the official denseclip_r50 model).

The tree mirrors detectron2's common models: a meta-architecture over an FPN whose bottom-up
is the DenseCLIP backbone (CLIP image encoder + class prompts + context decoder).
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from denseclip.backbone import DenseCLIPBackbone
from denseclip.clip import CLIPResNet, CLIPTextEncoder
from denseclip.data import ADE20K_CLASSES
from denseclip.meta_arch import DenseCLIPSemanticSegmentor
from denseclip.prompting import ClassTextPrompts
from denseclip.pyramids import FPNWithSideOutputs
from denseclip.sem_seg_head import DenseCLIPSemSegFPNHead

from .prompting import set_prompting

# CLIP's normalisation, RGB in 0..255
CLIP_PIXEL_MEAN = [122.7709383, 116.7460125, 104.09373615]
CLIP_PIXEL_STD = [68.5005327, 66.6321579, 70.3231630]

model = L(DenseCLIPSemanticSegmentor)(
    backbone=L(FPNWithSideOutputs)(
        bottom_up=L(DenseCLIPBackbone)(
            image_encoder=L(CLIPResNet)(
                layers=[3, 4, 6, 3],
                width=64,
                output_dim=1024,
                input_resolution=512,
                use_act_checkpoint=False,  # True: recompute activations, less training memory
            ),
            prompts=L(ClassTextPrompts)(
                # 5 class-name tokens + 8 learnable contexts = 13
                text_encoder=L(CLIPTextEncoder)(
                    context_length=13,
                    width=512,
                    heads=8,
                    layers=12,
                    embed_dim=1024,
                    shared_prefix=True,  # [SOT, contexts] runs once for all K prompts
                    use_act_checkpoint=False,
                ),
                class_names=ADE20K_CLASSES,
                class_token_length=5,
                # data-parallel training: each rank encodes ~K/R classes, gathered with autograd
                shard_text_across_ranks=True,
            ),
            score_scale=1.0,  # segmentation concatenates the raw cosine scores
            gamma_init=1e-4,
        ),
        in_features=["res2", "res3", "res4", "res5"],
        out_channels=256,
        top_block=None,
    ),
    sem_seg_head=L(DenseCLIPSemSegFPNHead)(
        input_shape={
            f: L(ShapeSpec)(stride=s, channels="${....backbone.out_channels}")
            for f, s in zip(["p2", "p3", "p4", "p5"], [4, 8, 16, 32])
        },
        num_classes=150,
        conv_dims=256,
        common_stride=4,
        norm="SyncBN",
        ignore_value=255,
        dropout=0.1,
        loss_reduction="all_pixels",  # mmseg 0.19: mean over all label pixels
        loss_weight=1.0,
    ),
    pixel_mean=CLIP_PIXEL_MEAN,
    pixel_std=CLIP_PIXEL_STD,
    tau=0.07,
    aux_loss_weight=0.4,
    aux_loss_reduction="all_pixels",
    test_mode="slide",
    crop_size=(512, 512),
    stride=(341, 341),
    pad_windows=False,  # mmseg: every window at its own size (True: padded to multiples of 32)
)
set_prompting(model.backbone.bottom_up, "post")  # the context decoder
