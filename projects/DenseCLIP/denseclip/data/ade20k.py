"""ADE20K-150: the class names used as DenseCLIP text prompts, and the dataset as extracted
from the official ``ADEChallengeData2016.zip``.

detectron2 registers ``ade20k_sem_seg_train`` / ``ade20k_sem_seg_val`` (see
``detectron2/data/datasets/builtin.py``) with ``stuff_classes`` that are long synonym lists
("road, route", "chest of drawers, chest, bureau, dresser"): fine for display, but the official
DenseCLIP contexts were learned against mmseg 0.19's short names, and class names must fit in
3 CLIP BPE tokens. We therefore add a separate metadata key ``class_prompts`` holding the mmseg
names; ``stuff_classes`` is left untouched. Both lists have the same 150 classes in the same order
(label id ``i`` of detectron2's ``annotations_detectron2`` files is ``ADE20K_CLASSES[i]``).
"""

import os
from typing import Dict, List, Optional

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg

__all__ = [
    "ADE20K_CHALLENGE_NAMES",
    "ADE20K_CLASSES",
    "ADE20K_DATASET_NAMES",
    "register_ade20k_challenge",
    "register_ade20k_prompts",
]

# mmseg 0.19 ``ADE20KDataset.CLASSES``, verbatim ('bed ' really has a trailing space upstream;
# the CLIP tokenizer strips it, and the string is kept exact so that names compare equal).
# fmt: off
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
# fmt: on

ADE20K_DATASET_NAMES = ("ade20k_sem_seg_train", "ade20k_sem_seg_val")


def register_ade20k_prompts() -> None:
    """Set ``class_prompts`` (list of 150 str) on detectron2's builtin ADE20K datasets.

    Idempotent: setting the same value again is allowed by ``MetadataCatalog``.
    """
    for name in ADE20K_DATASET_NAMES:
        MetadataCatalog.get(name).set(class_prompts=list(ADE20K_CLASSES))


#: Dataset name → folder of ``ADEChallengeData2016`` as the official zip extracts it.
ADE20K_CHALLENGE_NAMES = {
    "ade20k_challenge_train": "training",
    "ade20k_challenge_val": "validation",
}


def _challenge_dicts(image_root: str, label_root: str) -> List[Dict]:
    return [
        dict(record, reduce_zero_label=True)
        for record in load_sem_seg(label_root, image_root, gt_ext="png", image_ext="jpg")
    ]


def register_ade20k_challenge(root: Optional[str] = None, prefix: str = "ade20k_challenge") -> None:
    """Registers ``{prefix}_train`` and ``{prefix}_val`` from ``root`` (default
    ``$DETECTRON2_DATASETS/ADEChallengeData2016``) as extracted: ``images/{training,validation}/
    *.jpg`` and ``annotations/{training,validation}/*.png``, whose labels are read as mmseg reads
    them (``reduce_zero_label``: 0 is ignored, class k is k − 1), so no preparation step is
    needed. Names already registered are left as they are."""
    if root is None:
        root = os.path.join(os.getenv("DETECTRON2_DATASETS", "datasets"), "ADEChallengeData2016")
    for name, folder in ADE20K_CHALLENGE_NAMES.items():
        name = prefix + name[len("ade20k_challenge") :]
        if name in DatasetCatalog.list():
            continue
        image_root = os.path.join(root, "images", folder)
        label_root = os.path.join(root, "annotations", folder)
        DatasetCatalog.register(name, lambda i=image_root, s=label_root: _challenge_dicts(i, s))
        MetadataCatalog.get(name).set(
            image_root=image_root,
            sem_seg_root=label_root,
            stuff_classes=list(ADE20K_CLASSES),
            evaluator_type="sem_seg",
            ignore_label=255,
            reduce_zero_label=True,
        )
