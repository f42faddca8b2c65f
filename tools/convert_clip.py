#!/usr/bin/env python
"""Convert an OpenAI CLIP release file into weights for our configs.

    python tools/convert_clip.py RN50.pt pretrained/RN50_d2.pth
    python train_net.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
        train.init_checkpoint=pretrained/RN50_d2.pth

SRC is a TorchScript archive (RN50.pt, RN101.pt, ViT-B-16.pt as released) or a plain state dict.
The image encoder goes to ``backbone.bottom_up.image_encoder.*`` and the text encoder to
``backbone.bottom_up.prompts.text_encoder.*``. Positional embeddings are kept at CLIP's size and
adapted to each config when loaded (resized to input_resolution/32 or /16, truncated to the
context length), so one file serves every config of the same CLIP model.
"""

import argparse
import os
import sys

import torch

from denseclip.checkpoint import (
    AtomicWriter,
    UntrustedCheckpointError,
    convert_openai_clip,
    load_openai_clip_state_dict,
)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("src", help="OpenAI CLIP file (.pt TorchScript archive or state dict)")
    parser.add_argument("dst", help="output .pth for train.init_checkpoint")
    return parser


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_args(argv)

    if not os.path.isfile(args.src):
        parser.error(f"no file at {args.src!r}")
    try:
        model, report = convert_openai_clip(load_openai_clip_state_dict(args.src))
    except UntrustedCheckpointError as error:
        sys.exit(f"error: {error}")
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    with AtomicWriter(args.dst) as f:
        torch.save({"model": model, "__author__": "denseclip/tools/convert_clip.py"}, f)
    print(f"{args.src} -> {args.dst}: {report.summary()}")


if __name__ == "__main__":
    main()
