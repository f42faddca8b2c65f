#!/usr/bin/env python
"""Export a trained model to one graph that takes an image and returns the prediction.

    python tools/export_model.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
        --weights output/denseclip_fpn_res50_512x512_80k/model_final.pth --format onnx \\
        --output export/denseclip_r50

writes OUTPUT/model.onnx (ONNX Runtime) or OUTPUT/model.ts (TorchScript). The graph holds the
image encoder, the context decoder and the heads, with the K class text embeddings as constants:
never the text encoder (pre-model prompting, which runs it on every image, is exported whole).
Segmentation graphs take B×3×H×W images of any size (raw pixels in the model's channel order)
and return B×K×H×W logits; detection graphs take one 3×H×W image and return the detections at
that size. Run it with ``denseclip.export.ExportedPredictor`` or ``tools/demo.py --exported``,
which add the config's test-time resize, slide inference and the final rescaling. The export is
verified against the model before it is kept (module ``denseclip.export``).
"""

import argparse
import os

from detectron2.data.detection_utils import read_image

from denseclip import Predictor
from denseclip.export import EXPORT_FORMATS, export_model
from denseclip.config import add_config_arguments, parse_config_arguments


def _megabytes(num_bytes: float) -> float:
    return num_bytes / 2**20


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    parser.add_argument("--weights", help="checkpoint (default: the config's init_checkpoint)")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument("--output", required=True, help="folder for model.onnx / model.ts")
    parser.add_argument(
        "--sample-image",
        help="detection only: an image that shows objects, traced instead of random pixels "
        "(the trace must see detections)",
    )
    add_config_arguments(
        parser, "register a dataset folder first, as train_net.py does (for its class names)"
    )
    return parser


def main(argv=None) -> str:
    args, cfg = parse_config_arguments(argument_parser(), argv)
    predictor = Predictor(cfg, args.weights, device="cpu")
    sample = None
    if args.sample_image:
        image = read_image(args.sample_image, format=predictor.input_format)
        sample = predictor._inputs(image)["image"]
    keys = ("stuff_classes", "thing_classes")
    keys = keys if "sem_seg_head" in cfg.model else keys[::-1]
    names = predictor.metadata.get(keys[0]) or predictor.metadata.get(keys[1])
    path, metadata = export_model(predictor.model, args.format, args.output, sample, names)
    tensors = sum(t.numel() * t.element_size() for t in predictor.model.state_dict().values())
    text = "with the text encoder" if metadata.text_encoder_in_graph else "no text encoder"
    summary = (
        f"{args.config_file} -> {path} ({metadata.meta_architecture}, {metadata.task}, "
        f"K={len(metadata.class_names)}, {text}): {_megabytes(os.path.getsize(path)):.1f} MB; "
        f"the model's tensors (text encoder included): {_megabytes(tensors):.1f} MB"
    )
    if args.weights and os.path.isfile(args.weights):
        summary += f"; the checkpoint: {_megabytes(os.path.getsize(args.weights)):.1f} MB"
    print(summary)
    return summary


if __name__ == "__main__":
    main()
