#!/usr/bin/env python
"""Convert an official DenseCLIP release checkpoint (mmcv format) into a detectron2 checkpoint.

    python tools/convert_official_checkpoint.py denseclip_fpn_res50.pth \\
        pretrained/denseclip_fpn_res50_d2.pth \\
        --config configs/ADE20K/denseclip_fpn_res50_512x512_80k.py
    python train_net.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
        --eval-only train.init_checkpoint=pretrained/denseclip_fpn_res50_d2.pth

SRC is the file of the official model zoo (``{'meta': ..., 'state_dict': ...}``, official key
names). Every tensor is renamed (see ``denseclip.checkpoint.official_rules``); only RetinaNet's two
predictors are changed (their anchor blocks reordered from mmdet's ratio-major to detectron2's
size-major order). The text encoder keeps the checkpoint's weights. A key that no rule maps is
an error. With --config, the config's model is built and the result must load into it strictly (same keys, same shapes),
and the model's class names must be the checkpoint's ``meta['CLASSES']``.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

import torch

from detectron2.config import instantiate

from denseclip.checkpoint import (
    AtomicWriter,
    OfficialCheckpointError,
    check_class_names,
    check_matches_model,
    convert_official_state_dict,
    load_official_checkpoint,
)
from denseclip.config import load_config


def convert(src: str, dst: str, config: Optional[str] = None, overrides: Sequence[str] = ()) -> str:
    """Converts SRC into DST (checked against the config's model if given); returns a summary.

    Nothing is written unless SRC loads safely, converts and fits the model.

    Raises:
        OfficialCheckpointError: a file that would run code when loaded, unmapped keys, or a
            checkpoint that does not fit the model.
    """
    state_dict, meta = load_official_checkpoint(src)
    conversion = convert_official_state_dict(state_dict, source=src)
    checked = ""
    if config:
        cfg, _ = load_config(config, overrides)
        model = instantiate(cfg.model)
        check_matches_model(conversion.state_dict, model.state_dict(), src, config)
        check_class_names(meta.get("CLASSES"), model, config)
        checked = f"; loads strictly into {config}"
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with AtomicWriter(dst) as f:
        torch.save(
            {"model": conversion.state_dict, "__author__": "tools/convert_official_checkpoint.py"},
            f,
        )
    return f"{src} -> {dst}: {conversion.summary()}{checked}"


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", help="official DenseCLIP checkpoint (mmcv .pth)")
    parser.add_argument("dst", help="output .pth for train.init_checkpoint")
    parser.add_argument("--config", metavar="CFG", help="check the result against this config")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="overrides of the --config"
    )
    return parser


def main(argv=None):
    parser = argument_parser()
    args = parser.parse_intermixed_args(argv)

    if not os.path.isfile(args.src):
        parser.error(f"no file at {args.src!r}")
    if args.overrides and not args.config:
        parser.error("key=value overrides need --config")
    try:
        print(convert(args.src, args.dst, args.config, args.overrides))
    except OfficialCheckpointError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
