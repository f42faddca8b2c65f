"""configs/Synthetic/denseclip_fpn_tiny.py with a detectron2 ResNet as the image encoder (any
backbone, paper §3.4): a 4-stage bottleneck ResNet of one block per stage (res2..res5: 32, 64,
128, 256 channels) under a randomly initialised attention pool into the tiny text space (64)."""

from detectron2.config import LazyCall as L
from detectron2.modeling.backbone import BasicStem, BottleneckBlock, ResNet

from denseclip.imagenet_backbone import ImageNetDenseEncoder

from .denseclip_fpn_tiny import dataloader, lr_multiplier, model, optimizer, train

_channels = [16, 32, 64, 128, 256]  # stem, res2..res5
model.backbone.bottom_up.image_encoder = L(ImageNetDenseEncoder)(
    backbone=L(ResNet)(
        stem=L(BasicStem)(in_channels=3, out_channels=_channels[0], norm="BN"),
        stages=[
            L(ResNet.make_stage)(
                block_class=BottleneckBlock,
                num_blocks=1,
                stride_per_block=[1 if i == 0 else 2],
                in_channels=_channels[i],
                bottleneck_channels=_channels[i + 1] // 4,
                out_channels=_channels[i + 1],
                norm="BN",
            )
            for i in range(4)
        ],
        out_features=["res2", "res3", "res4", "res5"],
        freeze_at=0,
    ),
    output_dim=64,  # the tiny text encoder's embed_dim
    heads=4,
    input_resolution=128,
)

train.output_dir = "./output/synthetic/denseclip_fpn_imagenet_tiny"
