#!/usr/bin/env python
"""`make demo`: train a small DenseCLIP on the built-in synthetic shapes on CPU, evaluate it,
print its per-class IoU beside chance level, and draw what it sees.

The picture (OUTPUT_DIR/predictions.png, or --picture) shows, per validation image: image |
ground truth | prediction | the pixel-text score map of every class | the score map of each
free-text --prompt (not a class name). --opts overrides the config (key=value ...).
"""

import argparse
import json
import os
from typing import Dict, List, Sequence

import cv2
import numpy as np

from detectron2.data import DatasetCatalog, MetadataCatalog

from denseclip import Predictor
from denseclip.data import read_image
from denseclip.engine import do_train, setup
from denseclip.inference.visualization import (
    class_legend,
    paint_labels,
    save_figure,
    score_map_figure,
    score_map_panels,
)

CONFIG = "configs/Synthetic/denseclip_fpn_demo.py"
PROMPTS = ["blue circle"]


def label_counts(dataset_dicts: Sequence[dict], num_classes: int) -> np.ndarray:
    """Pixels per class (K,) over the ground truth of ``dataset_dicts`` (ignore label left out)."""
    counts = np.zeros(num_classes, np.int64)
    for d in dataset_dicts:
        labels = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        counts += np.bincount(labels[labels < num_classes].ravel(), minlength=num_classes)
    return counts


def majority_class_ious(counts: np.ndarray) -> np.ndarray:
    """Per-class IoU (K,) in percent of always predicting the most frequent class: its pixel
    share for that class, 0 for the others."""
    ious = np.zeros(len(counts))
    ious[counts.argmax()] = 100.0 * counts.max() / counts.sum()
    return ious


def iou_table(results: Dict[str, float], classes: Sequence[str], counts: np.ndarray) -> str:
    """The evaluator's per-class IoU and mIoU beside chance level (:func:`majority_class_ious`;
    its mean, like SemSegEvaluator's, over the classes present), as aligned text lines."""
    chance = majority_class_ious(counts)
    width = max(len(name) for name in list(classes) + ["class", "mIoU"])
    lines = [f"  {'class':<{width}}  {'IoU':>5}  {'chance':>6}"]
    for name, chance_iou in zip(classes, chance):
        lines.append(f"  {name:<{width}}  {results[f'IoU-{name}']:5.1f}  {chance_iou:6.1f}")
    chance_miou = chance[counts > 0].mean()
    lines.append(f"  {'mIoU':<{width}}  {results['mIoU']:5.1f}  {chance_miou:6.1f}")
    return "\n".join(lines)


def example_rows(predictor: Predictor, dataset_dicts: Sequence[dict], prompts: Sequence[str]):
    """image | ground truth | prediction | class score maps | prompt score maps, per image."""
    rows = []
    for d in dataset_dicts:
        image = read_image(d["file_name"], format=predictor.input_format)
        truth = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        prediction = predictor(image)["sem_seg"].argmax(dim=0).cpu().numpy()
        colors = predictor.metadata.stuff_colors
        pictures = [
            ("image", image),
            ("ground truth", paint_labels(image, truth, colors)),
            ("prediction", paint_labels(image, prediction, colors)),
        ]
        rows.append(pictures + score_map_panels(predictor, image, prompts))
    return rows


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output-dir", default="output/demo")
    parser.add_argument("--max-iter", type=int, default=None, help="override train.max_iter")
    parser.add_argument("--examples", type=int, default=4, help="validation images drawn")
    parser.add_argument(
        "--prompt",
        dest="prompts",
        action="append",
        metavar="TEXT",
        help=f"free text whose score map is drawn (repeatable; default {PROMPTS})",
    )
    parser.add_argument("--picture", help="where to write it (default OUTPUT_DIR/predictions.png)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="key=value ...")
    return parser


def main(argv: List[str] = None) -> None:
    cli = argument_parser().parse_args(argv)

    opts = [f"train.output_dir={cli.output_dir}"]
    if cli.max_iter:
        opts += [f"train.max_iter={cli.max_iter}", f"train.eval_period={cli.max_iter}"]
    args = argparse.Namespace(
        config_file=CONFIG, opts=opts + cli.opts, dataset=None, eval_only=False, resume=False
    )
    cfg = setup(args)
    do_train(cfg)

    with open(os.path.join(cli.output_dir, "eval_results.json")) as f:
        results = json.load(f)["sem_seg"]
    test_name = cfg.dataloader.test.dataset.names
    metadata = MetadataCatalog.get(test_name)
    val_dicts = DatasetCatalog.get(test_name)
    counts = label_counts(val_dicts, len(metadata.stuff_classes))

    predictor = Predictor(cfg, os.path.join(cli.output_dir, "model_final.pth"), input_format="RGB")
    rows = example_rows(predictor, val_dicts[: cli.examples], cli.prompts or PROMPTS)
    picture = cli.picture or os.path.join(cli.output_dir, "predictions.png")
    save_figure(score_map_figure(rows, class_legend(metadata)), picture, max_colors=256)

    print(
        f"\nDenseCLIP on synthetic shapes ({cfg.train.max_iter} iterations on CPU), "
        f"{len(val_dicts)} validation images; chance: always predicting the most frequent "
        f"class ({metadata.stuff_classes[counts.argmax()]})"
    )
    print(iou_table(results, metadata.stuff_classes, counts))
    print(f"  picture (image | ground truth | prediction | score maps): {picture}")


if __name__ == "__main__":
    main()
