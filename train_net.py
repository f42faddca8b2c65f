#!/usr/bin/env python
"""Train or evaluate DenseCLIP (and the CLIP baselines) from a LazyConfig.

    python train_net.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
        --num-gpus 8 train.init_checkpoint=pretrained/RN50_d2.pth
    python train_net.py --config-file CFG --eval-only train.init_checkpoint=model_final.pth
    python train_net.py --config-file configs/Synthetic/denseclip_fpn_tiny.py \\
        --dataset shapes=/data/shapes \\
        dataloader.train.dataset.names=shapes_train dataloader.test.dataset.names=shapes_val

Without CUDA, ``--num-gpus N`` starts N CPU processes that train with DDP over gloo.
"""

from detectron2.engine import default_argument_parser, launch

from denseclip.engine import main


def argument_parser():
    parser = default_argument_parser(epilog=__doc__)
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="NAME=ROOT",
        help="register NAME_train and NAME_val from a dataset folder (repeatable); the model "
        "takes the dataset's class names as prompts",
    )
    parser.add_argument(
        "--aug-test",
        action="store_true",
        help="evaluate with the paper's multi-scale + flip test (scales 0.5..1.75 of the test "
        "resize: 2048x512, ViT-B 2048x640; same as the override tta.enabled=True)",
    )
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
