#!/usr/bin/env python
"""`make demo`: train a tiny DenseCLIP on the built-in synthetic dataset on CPU, evaluate it,
print its mIoU next to chance level, and save image | ground truth | prediction pictures."""

import argparse
import json
import os

import cv2
import numpy as np
import torch

from detectron2.config import LazyConfig, instantiate
from detectron2.data import DatasetCatalog, MetadataCatalog

from denseclip.checkpoint import DenseCLIPCheckpointer
from denseclip.data import read_image
from denseclip.engine import do_train, setup
from denseclip.visualization import draw_sem_seg, side_by_side

CONFIG = "configs/Synthetic/denseclip_fpn_tiny.py"


def majority_class_miou(dataset_dicts, num_classes: int) -> float:
    """mIoU of always predicting the most frequent class: the chance level to beat."""
    counts = np.zeros(num_classes, np.int64)
    for d in dataset_dicts:
        labels = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        counts += np.bincount(labels[labels != 255].ravel(), minlength=num_classes)[:num_classes]
    present = counts > 0
    return 100.0 * counts.max() / counts.sum() / present.sum()


def save_examples(model, dataset_name: str, path: str, count: int) -> None:
    metadata = MetadataCatalog.get(dataset_name)
    rows = []
    for d in DatasetCatalog.get(dataset_name)[:count]:
        image = read_image(d["file_name"], format="RGB")
        gt = cv2.imread(d["sem_seg_file_name"], cv2.IMREAD_UNCHANGED)
        with torch.no_grad():
            tensor = torch.as_tensor(image.transpose(2, 0, 1).copy())
            output = model([{"image": tensor, "height": image.shape[0], "width": image.shape[1]}])
        prediction = output[0]["sem_seg"].argmax(0).cpu().numpy()
        rows.append(
            [image, draw_sem_seg(image, gt, metadata), draw_sem_seg(image, prediction, metadata)]
        )
    cv2.imwrite(path, side_by_side(rows)[:, :, ::-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="output/demo")
    parser.add_argument("--max-iter", type=int, default=None, help="override train.max_iter")
    parser.add_argument("--examples", type=int, default=4)
    cli = parser.parse_args()

    opts = [f"train.output_dir={cli.output_dir}"]
    if cli.max_iter:
        opts += [f"train.max_iter={cli.max_iter}", f"train.eval_period={cli.max_iter}"]
    args = argparse.Namespace(
        config_file=CONFIG, opts=opts, dataset=None, eval_only=False, resume=False
    )
    cfg = setup(args)
    do_train(cfg)

    with open(os.path.join(cli.output_dir, "eval_results.json")) as f:
        miou = json.load(f)["sem_seg"]["mIoU"]
    test_name = cfg.dataloader.test.dataset.names
    chance = majority_class_miou(
        DatasetCatalog.get(test_name), len(MetadataCatalog.get(test_name).stuff_classes)
    )

    model = instantiate(cfg.model).eval()
    DenseCLIPCheckpointer(model).load(os.path.join(cli.output_dir, "model_final.pth"))
    picture = os.path.join(cli.output_dir, "predictions.png")
    save_examples(model, test_name, picture, cli.examples)

    print(f"\nDenseCLIP (tiny, synthetic, {cfg.train.max_iter} iterations on CPU)")
    print(f"  val mIoU: {miou:.1f}   (majority-class chance level: {chance:.1f})")
    print(f"  pictures (image | ground truth | prediction): {picture}")


if __name__ == "__main__":
    main()
