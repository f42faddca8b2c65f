"""COCO class names used as DenseCLIP text prompts.

mmdet's ``CocoDataset.CLASSES``, the strings the official DenseCLIP contexts were learned
against, set as ``class_prompts`` on detectron2's builtin ``coco_2017_{train,val}`` (whose
``thing_classes`` hold the same 80 names in the same order: contiguous class id ``i`` is
``COCO_CLASSES[i]``).
"""

from detectron2.data import MetadataCatalog

__all__ = ["COCO_CLASSES", "COCO_DATASET_NAMES", "register_coco_prompts"]

# fmt: off
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
# fmt: on

COCO_DATASET_NAMES = ("coco_2017_train", "coco_2017_val")


def register_coco_prompts() -> None:
    """Set ``class_prompts`` (list of 80 str) on detectron2's builtin COCO 2017 datasets.

    Idempotent: setting the same value again is allowed by ``MetadataCatalog``.
    """
    for name in COCO_DATASET_NAMES:
        MetadataCatalog.get(name).set(class_prompts=list(COCO_CLASSES))
