#!/usr/bin/env python
"""FLOPs and parameters of a config's model, counted as in the paper's Table 1.

    python tools/get_flops.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py
    python tools/get_flops.py --config-file CFG --shape 512 512
    python tools/get_flops.py --config-file CFG model.backbone.bottom_up.context_decoder=null

fvcore flops (one fused multiply-add = one flop, attention matmuls included) of the inference of
one H×W image (default 1024×1024) in eval mode, whole image at once; the text encoder's output is
cached at inference, so it costs no flops and its parameters are left out. Prints fvcore's
per-module table, a summary, and last one JSON line {"gflops": ..., "params_m": ...}.
The weights do not matter: the model is built from the config without loading any.
``--fvcore2021`` counts transposed convolutions as the fvcore of the paper did (the ViT-B rows).
"""

import argparse
import json

import torch
from fvcore.nn import flop_count_table

from detectron2.config import instantiate

from denseclip.analysis.flops import InferenceFlopCountAnalysis
from denseclip.config import load_config


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    parser.add_argument(
        "--shape",
        type=int,
        nargs=2,
        default=(1024, 1024),
        metavar=("H", "W"),
        help="input image size (default: 1024 1024, as Table 1)",
    )
    parser.add_argument("--max-depth", type=int, default=4, help="depth of the module table")
    parser.add_argument("--device", default="cpu", help="where to run the traced inference")
    parser.add_argument(
        "--fvcore2021",
        action="store_true",
        help="count transposed convolutions as the paper's fvcore did (before October 2021)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: key=value")
    return parser


def main(argv=None) -> None:
    args = argument_parser().parse_args(argv)
    height, width = args.shape

    cfg, _ = load_config(args.config_file, args.opts)
    model = instantiate(cfg.model).to(torch.device(args.device))
    analysis = InferenceFlopCountAnalysis(model, (height, width), fvcore2021=args.fvcore2021)
    result = analysis.complexity()

    print(flop_count_table(analysis, max_depth=args.max_depth))
    legacy = ", transposed convolutions counted as fvcore did before 2021-10-27"
    print(
        f"input: one {height}×{width} image, eval mode, whole-image inference"
        + (legacy if args.fvcore2021 else "")
    )
    for name, count in result.excluded_params.items():
        print(
            f"excluded: {name}, {count / 1e6:.2f} M parameters (listed in the table): its class "
            "embeddings are cached, it does not run at inference"
        )
    attention = result.attention_flops / 1e9
    print(f"attention matmuls fvcore's defaults miss (included): {attention:.2f} G")
    not_counted = ", ".join(f"{op} ×{n}" for op, n in sorted(analysis.unsupported_ops().items()))
    print(f"not counted (no fvcore handle): {not_counted or 'none'}")
    print(f"GFLOPs: {result.gflops:.1f}   parameters: {result.params_m:.1f} M")
    print(json.dumps(result.summary()))


if __name__ == "__main__":
    main()
