#!/usr/bin/env python
"""Combine ImageNet backbone weights and CLIP's text encoder into one file for the any-backbone
configs (paper §3.4, e.g. configs/ADE20K/denseclip_fpn_r50_imagenet_512x512_80k.py).

    # CLIP RN50 (its text encoder is used)
    python tools/convert_clip.py RN50.pt pretrained/RN50_d2.pth
    # torchvision's ImageNet ResNet-50 release, as it is
    python tools/combine_imagenet_clip.py \\
        --config-file configs/ADE20K/denseclip_fpn_r50_imagenet_512x512_80k.py \\
        resnet50-0676ba61.pth pretrained/RN50_d2.pth \\
        pretrained/R-50_imagenet_clip.pth
    python train_net.py --config-file configs/ADE20K/denseclip_fpn_r50_imagenet_512x512_80k.py \\
        --num-gpus 8 train.init_checkpoint=pretrained/R-50_imagenet_clip.pth

    # Swin-T: the ImageNet-1K release of microsoft/Swin-Transformer, as it is
    python tools/combine_imagenet_clip.py \\
        --config-file configs/ADE20K/denseclip_fpn_swin-t_imagenet_512x512_80k.py \\
        swin_tiny_patch4_window7_224.pth pretrained/RN50_d2.pth \\
        pretrained/swin-t_imagenet_clip.pth

The ImageNet file is loaded by detectron2's checkpointer into the config's backbone (torchvision
ResNet names are renamed to detectron2's; its matching heuristics map detectron2-converted and
MSRA Caffe2 ResNet files; Swin release names are detectron2's); the output holds the whole
backbone and the CLIP text encoder under the model's own names.
"""

import argparse
import os
import sys

import torch

from detectron2.config import LazyConfig, instantiate

from denseclip.checkpoint import (
    AtomicWriter,
    UntrustedCheckpointError,
    combine_imagenet_and_clip,
    load_torch_file,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="an any-backbone config")
    parser.add_argument(
        "imagenet", help="ImageNet weights: torchvision/detectron2 ResNet, Swin release"
    )
    parser.add_argument("clip", help="output of tools/convert_clip.py")
    parser.add_argument("dst", help="output .pth for train.init_checkpoint")
    return parser


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)

    for path in (args.imagenet, args.clip):
        if not os.path.isfile(path):
            parser.error(f"no file at {path!r}")
    model = instantiate(LazyConfig.load(args.config_file).model)
    try:
        clip_model = load_torch_file(args.clip)["model"]
        combined = combine_imagenet_and_clip(model, args.imagenet, clip_model)
    except UntrustedCheckpointError as error:
        sys.exit(f"error: {error}")
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    with AtomicWriter(args.dst) as f:
        torch.save({"model": combined, "__author__": "denseclip/tools/combine_imagenet_clip.py"}, f)
    print(f"{args.imagenet} + {args.clip} -> {args.dst}: {len(combined)} tensors")


if __name__ == "__main__":
    main()
