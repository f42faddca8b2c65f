"""ADE20K-150 semantic segmentation, read from ``$DETECTRON2_DATASETS/ADEChallengeData2016`` as
the official zip extracts it (``ade20k_challenge_*``: mmseg's ``reduce_zero_label``, no
preparation step; detectron2's prepared ``ade20k_sem_seg_*`` work too), with mmseg's pipeline: random ratio resize of
(2048, 512), 512 crop (category ratio ≤ 0.75), flip, photometric distortion; tests at short
side 512 (long ≤ 2048). Resizing is mmcv's (OpenCV bilinear, mmcv's rounding);
``augmentations.resize_backend=pil`` (train and test) switches to detectron2's PIL resize. Images
are RGB; normalisation happens in the model."""

from detectron2.config import LazyCall as L
from detectron2.data import (
    build_detection_test_loader,
    build_detection_train_loader,
    get_detection_dataset_dicts,
)
from detectron2.evaluation import SemSegEvaluator

from denseclip.data import (
    DenseCLIPDatasetMapper,
    ade20k_test_augmentations,
    ade20k_train_augmentations,
    sem_seg_label_loader,
)

dataloader = dict(
    train=L(build_detection_train_loader)(
        dataset=L(get_detection_dataset_dicts)(names="ade20k_challenge_train", filter_empty=False),
        mapper=L(DenseCLIPDatasetMapper)(
            is_train=True,
            augmentations=L(ade20k_train_augmentations)(crop_size=512, scale=(2048, 512)),
            image_format="RGB",
        ),
        total_batch_size=32,  # 4 images per GPU x 8 GPUs
        num_workers=4,
    ),
    test=L(build_detection_test_loader)(
        dataset=L(get_detection_dataset_dicts)(names="ade20k_challenge_val", filter_empty=False),
        mapper=L(DenseCLIPDatasetMapper)(
            is_train=False,
            augmentations=L(ade20k_test_augmentations)(scale=(2048, 512)),
            image_format="RGB",
        ),
        num_workers=4,
    ),
    evaluator=L(SemSegEvaluator)(
        dataset_name="${..test.dataset.names}",
        sem_seg_loading_fn=L(sem_seg_label_loader)(dataset_name="${..dataset_name}"),
    ),
)
