"""The official data pipelines (mmcv 1.3.17, mmseg 0.19, mmdet 2.17) re-stated for equivalence tests.

Written here from the official libraries' source, independently of ``denseclip.data``: image
decoding (``mmcv.imfrombytes``, cv2 backend), ``rescale_size`` / ``imresize`` / ``imrescale``
(cv2 backend), ``imnormalize``; mmseg's ``Resize``, ``RandomCrop``, ``RandomFlip``,
``PhotoMetricDistortion``, ``Normalize``, ``Pad``, its test pipeline and ``aug_test``; mmdet's
``LoadAnnotations`` (boxes, polygon masks), ``Resize``, ``RandomFlip`` and ``Pad``; and the structure of the
files mmcv's ``save_checkpoint`` writes. Pipeline steps take and return mmcv's ``results`` dicts
(``img`` HWC BGR uint8 as mmcv loads it, ``gt_semantic_seg`` HW uint8, ``gt_bboxes`` N×4 float32)
and draw from numpy's global RNG with the calls the official code makes, unless an ``rng`` is
injected (anything with numpy's ``randint`` / ``uniform`` / ``rand`` / ``random_sample`` /
``choice``).
"""

import collections
import time
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------- mmcv.image


def imread_color(path: str) -> np.ndarray:
    """``mmcv.imfrombytes(bytes, flag='color')`` with the cv2 backend: H×W×3 BGR uint8."""
    return cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)


def rescale_size(old_wh: Tuple[int, int], scale) -> Tuple[Tuple[int, int], float]:
    """``mmcv.rescale_size((w, h), scale, return_scale=True)``: a number scales both sides; a
    tuple is a (long, short) box the image must fit, keeping its ratio. Sizes round half up."""
    w, h = old_wh
    if isinstance(scale, (int, float)):
        factor = scale
    else:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return (int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)), factor


_INTERPOLATIONS = {"bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}


def imresize(img: np.ndarray, size_wh: Tuple[int, int], interpolation="bilinear") -> np.ndarray:
    """``mmcv.imresize`` with the cv2 backend (the default ``imread_backend``)."""
    return cv2.resize(img, size_wh, interpolation=_INTERPOLATIONS[interpolation])


def imrescale(img: np.ndarray, scale, interpolation="bilinear") -> np.ndarray:
    """``mmcv.imrescale``: :func:`rescale_size` then :func:`imresize`."""
    size, _ = rescale_size((img.shape[1], img.shape[0]), scale)
    return imresize(img, size, interpolation)


def imnormalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float], to_rgb=True):
    """``mmcv.imnormalize``: float32 copy, BGR→RGB, then in-place OpenCV subtract of the float64
    mean and multiply by the float64 reciprocal of the std."""
    out = img.copy().astype(np.float32)
    mean64 = np.float64(np.array(mean, np.float32).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(std, np.float32).reshape(1, -1))
    if to_rgb:
        cv2.cvtColor(out, cv2.COLOR_BGR2RGB, out)
    cv2.subtract(out, mean64, out)
    cv2.multiply(out, stdinv, out)
    return out


def impad(img: np.ndarray, shape_hw: Tuple[int, int], pad_val: float) -> np.ndarray:
    """``mmcv.impad(img, shape=...)``: pad bottom and right with a constant."""
    pad = [(0, shape_hw[0] - img.shape[0]), (0, shape_hw[1] - img.shape[1])]
    pad += [(0, 0)] * (img.ndim - 2)
    return np.pad(img, pad, constant_values=pad_val)


# ----------------------------------------------------------------------------- mmseg 0.19


class Resize:
    """mmseg ``Resize(img_scale, ratio_range, keep_ratio=True)`` (images and ``gt_semantic_seg``).

    A given ``results['scale']`` (set by ``MultiScaleFlipAug``) is used as is; otherwise with a
    ratio range one ``random_sample()`` picks ``r`` and the scale is ``int(img_scale·r)``."""

    def __init__(self, img_scale=None, ratio_range=None, rng=np.random):
        self.img_scale, self.ratio_range, self.rng = img_scale, ratio_range, rng

    def __call__(self, results: Dict) -> Dict:
        if "scale" not in results:
            if self.ratio_range is None:
                results["scale"] = self.img_scale
            else:
                low, high = self.ratio_range
                ratio = self.rng.random_sample() * (high - low) + low
                results["scale"] = (int(self.img_scale[0] * ratio), int(self.img_scale[1] * ratio))
        results["img"] = imrescale(results["img"], results["scale"], "bilinear")
        if "gt_semantic_seg" in results:
            seg = imrescale(results["gt_semantic_seg"], results["scale"], "nearest")
            results["gt_semantic_seg"] = seg
        return results


class RandomCrop:
    """mmseg ``RandomCrop(crop_size, cat_max_ratio, ignore_index=255)``."""

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_index=255, rng=np.random):
        self.crop_size, self.cat_max_ratio = crop_size, cat_max_ratio
        self.ignore_index, self.rng = ignore_index, rng

    def crop_bbox(self, img: np.ndarray) -> Tuple[int, int, int, int]:
        margin_h = max(img.shape[0] - self.crop_size[0], 0)
        margin_w = max(img.shape[1] - self.crop_size[1], 0)
        top = self.rng.randint(0, margin_h + 1)
        left = self.rng.randint(0, margin_w + 1)
        return top, top + self.crop_size[0], left, left + self.crop_size[1]

    @staticmethod
    def crop(array: np.ndarray, bbox) -> np.ndarray:
        y1, y2, x1, x2 = bbox
        return array[y1:y2, x1:x2, ...]

    def __call__(self, results: Dict) -> Dict:
        bbox = self.crop_bbox(results["img"])
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                labels, counts = np.unique(
                    self.crop(results["gt_semantic_seg"], bbox), return_counts=True
                )
                counts = counts[labels != self.ignore_index]
                if len(counts) > 1 and np.max(counts) / np.sum(counts) < self.cat_max_ratio:
                    break
                bbox = self.crop_bbox(results["img"])
        results["img"] = self.crop(results["img"], bbox)
        if "gt_semantic_seg" in results:
            results["gt_semantic_seg"] = self.crop(results["gt_semantic_seg"], bbox)
        return results


class RandomFlip:
    """mmseg ``RandomFlip(prob)``: horizontal when ``rand() < prob`` (or ``results['flip']``)."""

    def __init__(self, prob=0.5, rng=np.random):
        self.prob, self.rng = prob, rng

    def __call__(self, results: Dict) -> Dict:
        if "flip" not in results:
            results["flip"] = bool(self.rng.rand() < self.prob)
        if results["flip"]:
            results["img"] = np.flip(results["img"], axis=1)
            if "gt_semantic_seg" in results:
                results["gt_semantic_seg"] = np.flip(results["gt_semantic_seg"], axis=1).copy()
        return results


class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion`` with its default ranges, on the BGR uint8 image."""

    def __init__(self, brightness_delta=32, contrast=(0.5, 1.5), saturation=(0.5, 1.5),
                 hue_delta=18, rng=np.random):  # fmt: skip
        self.brightness_delta, self.contrast, self.saturation = (
            brightness_delta,
            contrast,
            saturation,
        )
        self.hue_delta, self.rng = hue_delta, rng

    @staticmethod
    def convert(img: np.ndarray, alpha=1.0, beta=0.0) -> np.ndarray:
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def brightness(self, img):
        if self.rng.randint(2):
            delta = self.brightness_delta
            return self.convert(img, beta=self.rng.uniform(-delta, delta))
        return img

    def contrast_step(self, img):
        if self.rng.randint(2):
            return self.convert(img, alpha=self.rng.uniform(*self.contrast))
        return img

    def saturation_step(self, img):
        if self.rng.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[:, :, 1] = self.convert(hsv[:, :, 1], alpha=self.rng.uniform(*self.saturation))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def hue_step(self, img):
        if self.rng.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            shift = self.rng.randint(-self.hue_delta, self.hue_delta)
            hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + shift) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        return img

    def __call__(self, results: Dict) -> Dict:
        img = self.brightness(results["img"])
        mode = self.rng.randint(2)
        if mode == 1:
            img = self.contrast_step(img)
        img = self.hue_step(self.saturation_step(img))
        if mode == 0:
            img = self.contrast_step(img)
        results["img"] = img
        return results


class Normalize:
    """mmseg / mmdet ``Normalize(mean, std, to_rgb=True)``."""

    def __init__(self, mean, std, to_rgb=True):
        self.mean, self.std, self.to_rgb = mean, std, to_rgb

    def __call__(self, results: Dict) -> Dict:
        results["img"] = imnormalize(results["img"], self.mean, self.std, self.to_rgb)
        return results


class Pad:
    """mmseg / mmdet ``Pad``: to a fixed ``size`` or to multiples of ``size_divisor``; the image
    with ``pad_val``, ``gt_semantic_seg`` with ``seg_pad_val``."""

    def __init__(self, size=None, size_divisor=None, pad_val=0, seg_pad_val=255):
        self.size, self.size_divisor = size, size_divisor
        self.pad_val, self.seg_pad_val = pad_val, seg_pad_val

    def __call__(self, results: Dict) -> Dict:
        h, w = results["img"].shape[:2]
        if self.size is not None:
            shape = tuple(self.size)
        else:
            d = self.size_divisor
            shape = (-(-h // d) * d, -(-w // d) * d)
        results["img"] = impad(results["img"], shape, self.pad_val)
        if "gt_semantic_seg" in results:
            results["gt_semantic_seg"] = impad(results["gt_semantic_seg"], shape, self.seg_pad_val)
        return results


# CLIP's mean / std in RGB 0..255: the img_norm_cfg of the official ADE20K and COCO configs
CLIP_MEAN = [v * 255 for v in (0.48145466, 0.4578275, 0.40821073)]
CLIP_STD = [v * 255 for v in (0.26862954, 0.26130258, 0.27577711)]


def compose(steps, results: Dict) -> Dict:
    for step in steps:
        results = step(results)
    return results


def ade20k_train_pipeline(crop_size=512, img_scale=(2048, 512), rng=np.random) -> List:
    """The official ADE20K training pipeline after loading (``ade20k_clip.py``), labels already
    reduced (``reduce_zero_label``); Normalize and Pad are left to :func:`normalize_and_pad`."""
    return [
        Resize(img_scale, ratio_range=(0.5, 2.0), rng=rng),
        RandomCrop((crop_size, crop_size), cat_max_ratio=0.75, rng=rng),
        RandomFlip(prob=0.5, rng=rng),
        PhotoMetricDistortion(rng=rng),
    ]


def normalize_and_pad(results: Dict, crop_size=512) -> Dict:
    """The official pipeline's last steps: ``Normalize(CLIP, to_rgb=True)``, ``Pad(crop)``."""
    steps = [Normalize(CLIP_MEAN, CLIP_STD), Pad(size=(crop_size, crop_size))]
    return compose(steps, results)


def mmseg_test_input(img_bgr: np.ndarray, scale, flip=False) -> torch.Tensor:
    """One pass of the official test pipeline (``MultiScaleFlipAug`` with ``Resize(keep_ratio)``,
    ``RandomFlip``, ``Normalize``) on the loaded image: 1×3×h×w float32, RGB, normalised."""
    results = compose(
        [Resize(), RandomFlip(), Normalize(CLIP_MEAN, CLIP_STD)],
        {"img": img_bgr, "scale": tuple(scale), "flip": flip},
    )
    return torch.from_numpy(np.ascontiguousarray(results["img"].transpose(2, 0, 1)))[None]


def mmseg_simple_test(official, path: str, img_scale=(2048, 512)) -> torch.Tensor:
    """mmseg's single-scale test of an image file: the ``EncoderDecoder.inference`` logits at
    the original size (1×K×H×W; ``official(img, ori_shape)`` runs slide / whole inference and
    resizes back, see ``official_reference.py``)."""
    img = imread_color(path)
    return official(mmseg_test_input(img, img_scale), img.shape[:2])


def mmseg_aug_test(official, path: str, ratios, flip=True, img_scale=(2048, 512)):
    """mmseg's ``aug_test``: mean over scales ``int(img_scale·r)`` (and flips) of the softmax at
    the original size, flipped back (1×K×H×W)."""
    img = imread_color(path)
    total, passes = 0, 0
    for ratio in ratios:
        scale = (int(img_scale[0] * ratio), int(img_scale[1] * ratio))
        for flipped in (False, True) if flip else (False,):
            probs = F.softmax(official(mmseg_test_input(img, scale, flipped), img.shape[:2]), 1)
            total = total + (probs.flip(dims=(3,)) if flipped else probs)
            passes += 1
    return total / passes


# ----------------------------------------------------------------------------- mmdet 2.17


def load_coco_annotations(annotations: Sequence[Dict], height: int, width: int) -> Dict:
    """mmdet ``CocoDataset._parse_ann_info`` + ``LoadAnnotations(with_bbox, with_mask)``: the
    non-crowd annotations it keeps (box overlapping the image, area > 0, width and height ≥ 1)
    as ``gt_bboxes`` (N×4 float32 ``[x1, y1, x1 + w, y1 + h]``) and, when they have polygons,
    ``gt_masks`` (N×H×W uint8: ``poly2mask``, the polygons merged and rasterised at the original
    size)."""
    kept = []
    for ann in annotations:
        x1, y1, w, h = ann["bbox"]
        inter_w = max(0, min(x1 + w, width) - max(x1, 0))
        inter_h = max(0, min(y1 + h, height) - max(y1, 0))
        if inter_w * inter_h == 0 or ann["area"] <= 0 or w < 1 or h < 1 or ann.get("iscrowd"):
            continue
        kept.append(ann)
    boxes = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
             for a in kept]  # fmt: skip
    results = {"gt_bboxes": np.array(boxes, dtype=np.float32).reshape(-1, 4)}
    if kept and all("segmentation" in a for a in kept):
        rles = [
            mask_util.merge(mask_util.frPyObjects(a["segmentation"], height, width)) for a in kept
        ]
        results["gt_masks"] = np.stack([mask_util.decode(rle) for rle in rles])
    return results


class DetResize:
    """mmdet ``Resize(img_scale, keep_ratio=True)``: ``imrescale``, boxes times the per-axis
    factor ``new/old`` (float32) and clipped to the new image, masks ``imrescale``d (nearest)."""

    def __init__(self, img_scale=(1333, 800)):
        self.img_scale = img_scale

    def __call__(self, results: Dict) -> Dict:
        h, w = results["img"].shape[:2]
        scale = results.get("scale", self.img_scale)
        results["img"] = imrescale(results["img"], scale)
        new_h, new_w = results["img"].shape[:2]
        factor = np.array([new_w / w, new_h / h] * 2, dtype=np.float32)
        boxes = results["gt_bboxes"] * factor
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, new_w)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, new_h)
        results["gt_bboxes"] = boxes
        if "gt_masks" in results:
            results["gt_masks"] = np.stack(
                [imrescale(mask, scale, "nearest") for mask in results["gt_masks"]]
            )
        return results


class DetRandomFlip:
    """mmdet ``RandomFlip(flip_ratio)``: ``np.random.choice(['horizontal', None], p=[r, 1-r])``;
    boxes ``x1' = W - x2``, ``x2' = W - x1``; image and masks mirrored."""

    def __init__(self, flip_ratio=0.5, rng=np.random):
        self.flip_ratio, self.rng = flip_ratio, rng

    def __call__(self, results: Dict) -> Dict:
        direction = self.rng.choice(["horizontal", None], p=[self.flip_ratio, 1 - self.flip_ratio])
        results["flip"] = direction is not None
        if results["flip"]:
            width = results["img"].shape[1]
            results["img"] = np.flip(results["img"], axis=1)
            boxes = results["gt_bboxes"].copy()
            boxes[:, 0] = width - results["gt_bboxes"][:, 2]
            boxes[:, 2] = width - results["gt_bboxes"][:, 0]
            results["gt_bboxes"] = boxes
            if "gt_masks" in results:
                results["gt_masks"] = np.flip(results["gt_masks"], axis=2)
        return results


def coco_train_pipeline(rng=np.random) -> List:
    """The official COCO training pipeline after loading, up to Normalize (``coco_*_clip.py``)."""
    return [DetResize((1333, 800)), DetRandomFlip(0.5, rng=rng)]


# ----------------------------------------------------------------------------- mmcv checkpoints


def save_mmcv_checkpoint(model: torch.nn.Module, path, class_names, with_optimizer=True) -> str:
    """A file with the structure mmcv 1.3.17's ``save_checkpoint`` gives the official releases
    (run by ``IterBasedRunner.save_checkpoint`` in DenseCLIP's ``train_denseclip.py``): ``meta``
    with the runner's meta (env info, seed, experiment name, hook messages), the checkpoint hook's
    (mmseg version, config text, CLASSES, PALETTE), epoch / iter, mmcv version and time; the
    ``state_dict`` as an OrderedDict with ``_metadata``; the optimizer's state dict."""
    state_dict = collections.OrderedDict(
        (k, v.detach().cpu()) for k, v in model.state_dict().items()
    )
    state_dict._metadata = getattr(model.state_dict(), "_metadata", collections.OrderedDict())
    meta = {
        "env_info": "sys.platform: linux\nPython: 3.8.12\nCUDA available: True\nPyTorch: 1.9.0",
        "seed": None,
        "exp_name": "denseclip_fpn_res50_512x512_80k.py",
        "mmseg_version": "0.19.0+a3bb56f",
        "config": "model = dict(type='DenseCLIP', context_length=5)\ncrop_size = (512, 512)\n",
        "CLASSES": tuple(class_names),
        "PALETTE": [[120, 120, 120], [180, 120, 120]],
        "hook_msgs": {
            "last_ckpt": "work_dirs/denseclip/iter_80000.pth",
            "best_score": np.float64(0.4352),  # an EvalHook metric: a numpy scalar
            "best_ckpt": "work_dirs/denseclip/best_mIoU_iter_80000.pth",
        },
        "epoch": 1,
        "iter": 80000,
        "mmcv_version": "1.3.17",
        "time": time.asctime(),
    }
    checkpoint = {"meta": meta, "state_dict": state_dict}
    if with_optimizer:
        parameters = [p for p in model.parameters() if p.requires_grad][:3]
        optimizer = torch.optim.AdamW(parameters, lr=1e-4, weight_decay=1e-4)
        for p in parameters:
            p.grad = torch.zeros_like(p)
        optimizer.step()
        checkpoint["optimizer"] = optimizer.state_dict()
    torch.save(checkpoint, path)
    return str(path)


class ScriptedRNG:
    """An injected RNG that returns scripted values (``randint``, ``uniform``, ``rand``) in order,
    and fails when asked for more or for a different call."""

    def __init__(self, draws: Sequence[Tuple[str, object]]):
        self.draws = list(draws)

    def _next(self, kind: str):
        assert self.draws, f"no scripted draw left for {kind}"
        expected, value = self.draws.pop(0)
        assert expected == kind, f"scripted {expected}, asked for {kind}"
        return value

    def randint(self, *args):
        return self._next("randint")

    def uniform(self, *args):
        return self._next("uniform")

    def rand(self):
        return self._next("rand")


def as_bgr_uint8(image_chw: torch.Tensor, image_format="RGB") -> np.ndarray:
    """A detectron2 mapper's CHW image tensor → HWC BGR numpy (mmcv's layout)."""
    hwc = image_chw.permute(1, 2, 0).numpy()
    return np.ascontiguousarray(hwc[:, :, ::-1] if image_format == "RGB" else hwc)


def segmentation_label_maps(logits: torch.Tensor) -> np.ndarray:
    """K×H×W or 1×K×H×W logits / probabilities → H×W argmax labels."""
    return (logits[0] if logits.dim() == 4 else logits).argmax(0).numpy()


def fraction_identical(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float((a == b).mean())
