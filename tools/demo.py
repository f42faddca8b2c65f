#!/usr/bin/env python
"""Run a model on images and save pictures of its predictions (detectron2's Visualizer).

    python tools/demo.py --config-file configs/Synthetic/denseclip_fpn_demo.py \\
        --weights output/demo/model_final.pth --input photos/ "more/*.jpg" --output output/pictures

--input takes image files, folders (their .jpg/.jpeg/.png files) and glob patterns. Each picture
is written as OUTPUT/<image name>.png: class regions with their names for segmentation models,
boxes (and masks) with class names and scores for detection models. Weights default to the
config's train.init_checkpoint; --opts overrides the config (e.g. model.test_mode=whole).
--exported FILE runs a model exported by tools/export_model.py (ONNX Runtime or TorchScript)
with the config's pre-processing instead.

--score-maps [TEXT ...] draws what a DenseCLIP model sees instead: image | prediction | the
pixel-text score map of each class (at most --max-class-maps: those peaking highest) | the score
map of each TEXT (free text of at most 3 BPE tokens, e.g. "blue circle"). Score maps need the
model's image and text encoders: models without a text side (CLIP baselines) and exported models
are refused with the reason.

Images are read upright (EXIF orientation applied) in any mode (greyscale, palette, RGBA, CMYK,
16-bit greyscale scaled to 8 bits). A file that cannot be read (truncated, not an image) is named
in a warning and skipped; every other picture is still written, and the exit status is 1 with
the number of files that failed.
"""

import argparse
import glob
import os
import sys
from typing import Dict, List, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from detectron2.data import Metadata
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer

from denseclip import Predictor
from denseclip.data import ImageReadError, read_image
from denseclip.data.folder import IMAGE_EXTENSIONS
from denseclip.export import ExportedPredictor
from denseclip.config import add_config_arguments, parse_config_arguments
from denseclip.inference.visualization import class_legend, score_map_figure, score_map_panels


def _is_image(path: str) -> bool:
    return os.path.isfile(path) and os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def expand_inputs(inputs: Sequence[str]) -> List[str]:
    """Image paths of files, folders (not recursive) and glob patterns, in the given order."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, name) for name in os.listdir(item))
        else:
            found = [item] if os.path.isfile(item) else sorted(glob.glob(item, recursive=True))
        images = [path for path in found if _is_image(path)]
        if not images:
            raise FileNotFoundError(
                f"--input {item!r}: expected an image file, a folder of images or a glob "
                f"pattern matching images ({', '.join(IMAGE_EXTENSIONS)}), found none"
            )
        paths += images
    return paths


def output_paths(images: Sequence[str], output_dir: str) -> List[str]:
    """OUTPUT/<stem>.png for each image; raises if two images would share a picture."""
    outputs, sources = [], {}
    for image in images:
        path = os.path.join(output_dir, os.path.splitext(os.path.basename(image))[0] + ".png")
        if path in sources and os.path.abspath(sources[path]) != os.path.abspath(image):
            raise ValueError(
                f"--input: {sources[path]} and {image} would both be drawn to {path}; "
                "run them with different --output folders"
            )
        sources[path] = image
        outputs.append(path)
    return outputs


def draw_predictions(image_rgb: np.ndarray, predictions: Dict, metadata: Metadata) -> np.ndarray:
    """H×W×3 RGB image + a model's outputs (``sem_seg`` K×H×W logits and/or ``instances``)
    → H×W×3 RGB picture."""
    if "sem_seg" not in predictions and "instances" not in predictions:
        raise ValueError(
            f"expected 'sem_seg' or 'instances' in the outputs, got {sorted(predictions)}"
        )
    visualizer = Visualizer(image_rgb, metadata)
    if "sem_seg" in predictions:
        visualizer.draw_sem_seg(predictions["sem_seg"].argmax(dim=0).cpu(), alpha=0.6)
    if "instances" in predictions:
        visualizer.draw_instance_predictions(predictions["instances"].to("cpu"))
    return visualizer.output.get_image()


def draw_score_maps(
    predictor: Predictor, image_bgr: np.ndarray, prompts: Sequence[str], max_classes: int
):
    """image | prediction | class score maps | prompt score maps, as a matplotlib Figure."""
    image_rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    predictions = predictor(image_bgr)
    panels = [
        ("image", image_rgb),
        ("prediction", draw_predictions(image_rgb, predictions, predictor.metadata)),
    ] + score_map_panels(predictor, image_bgr, prompts, max_classes)
    labels = (
        [predictions["sem_seg"].argmax(dim=0).cpu().numpy()] if "sem_seg" in predictions else []
    )
    legend = class_legend(predictor.metadata, labels) if labels else ()
    return score_map_figure([panels], legend, panel_inches=2.5)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    parser.add_argument(
        "--input", required=True, nargs="+", help="image files, folders or glob patterns"
    )
    parser.add_argument("--output", required=True, help="folder for the pictures")
    parser.add_argument("--weights", help="checkpoint (default: train.init_checkpoint)")
    parser.add_argument(
        "--exported",
        metavar="FILE",
        help="run this exported model (model.onnx or model.ts of tools/export_model.py) "
        "instead of building the config's model",
    )
    parser.add_argument("--device", help="cpu, cuda, ... (default: train.device)")
    parser.add_argument(
        "--score-maps",
        nargs="*",
        metavar="TEXT",
        help="draw the class score maps and those of these free texts (DenseCLIP models)",
    )
    parser.add_argument(
        "--max-class-maps", type=int, default=8, help="with --score-maps (default: 8)"
    )
    add_config_arguments(
        parser, "register a dataset folder first, as train_net.py does (class names, colours)"
    )
    return parser


def main(argv=None):
    parser = argument_parser()
    args, cfg = parse_config_arguments(parser, argv)
    logger = setup_logger()  # detectron2's logger, set up once (setup_logger is cached)

    images = expand_inputs(args.input)
    outputs = output_paths(images, args.output)
    if args.exported:
        if args.weights:
            parser.error("give --weights or --exported, not both")
        if args.score_maps is not None:
            parser.error(
                "--score-maps needs the model's text encoder, which an exported model does not "
                "have: give the checkpoint with --weights instead of --exported"
            )
        predictor = ExportedPredictor(cfg, args.exported)
    else:
        predictor = Predictor(cfg, args.weights, device=args.device)
        if args.score_maps is not None and not predictor.has_score_maps:
            parser.error(
                f"--score-maps needs a DenseCLIP model (image and text encoders), but "
                f"{args.config_file} builds a {type(predictor.model).__name__} without a text "
                "side (a CLIP baseline?): it has no pixel-text score maps"
            )
        if args.score_maps and not predictor.encodes_free_text:
            parser.error(
                f"--score-maps {' '.join(args.score_maps)}: free text needs the text encoder, "
                f"which the deploy checkpoint {args.weights} does not have; --score-maps without "
                "texts draws the class score maps, or give the full checkpoint"
            )
    os.makedirs(args.output, exist_ok=True)
    failed = []
    for image_path, output_path in tqdm(list(zip(images, outputs)), desc="demo", unit="image"):
        try:
            image = read_image(image_path, format="BGR")
        except ImageReadError as error:
            logger.warning(f"skipped: {error}")
            failed.append(image_path)
            continue
        if args.score_maps is not None:
            figure = draw_score_maps(predictor, image, args.score_maps, args.max_class_maps)
            figure.savefig(output_path)
            continue
        picture = draw_predictions(image[:, :, ::-1], predictor(image), predictor.metadata)
        cv2.imwrite(output_path, picture[:, :, ::-1])
    print(f"wrote {len(outputs) - len(failed)} pictures to {args.output}")
    if failed:
        sys.exit(
            f"error: {len(failed)} of {len(images)} images could not be read and were skipped: "
            + ", ".join(failed)
        )


if __name__ == "__main__":
    main()
