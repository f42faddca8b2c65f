#!/usr/bin/env python
"""Export an inference-only checkpoint: the text encoder replaced by the text embeddings it gives.

    python tools/export_deploy.py --config-file configs/ADE20K/denseclip_fpn_res50_512x512_80k.py \\
        --weights output/denseclip_fpn_res50_512x512_80k/model_final.pth --output deploy.pth

With post-model prompting the class text embeddings depend only on learned parameters, so
inference never needs the text encoder. The export holds every weight of the model except the
text encoder and the learned contexts, plus the K×C embeddings of each class-prompt module
(``...prompts.deployed_embeddings``). Loaded into the config's model (``denseclip.Predictor``,
``tools/demo.py --weights``, ``train_net.py --eval-only train.init_checkpoint=...``) it predicts
exactly what the full checkpoint predicts; it cannot be trained further nor give free-text
score maps. Works for every model with DenseCLIP class prompts (segmentation and detection).
"""

import argparse
import os

import torch

from denseclip import Predictor
from denseclip.checkpoint.deploy import DeployedClassPrompts, deploy_class_prompts
from denseclip.config import add_config_arguments, parse_config_arguments


def _megabytes(state_dict) -> float:
    return sum(t.numel() * t.element_size() for t in state_dict.values()) / 2**20


def export_deploy(cfg, weights: str, output: str) -> str:
    """Loads ``weights`` into ``cfg``'s model, deploys its class prompts
    (:func:`denseclip.checkpoint.deploy.deploy_class_prompts`) and saves the state dict to
    ``output`` (a detectron2 checkpoint ``{"model": ...}``). Returns a summary line."""
    model = Predictor(cfg, weights, device="cpu", fold_bn=False).model
    full_mb = _megabytes(model.state_dict())
    deploy_class_prompts(model)
    prompts = [m for m in model.modules() if isinstance(m, DeployedClassPrompts)]
    if not prompts:
        raise ValueError(
            f"{type(model).__name__} has no DenseCLIP class prompts (ClassTextPrompts): nothing "
            "to deploy (is this a CLIP baseline config?)"
        )
    state_dict = model.state_dict()
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    torch.save({"model": state_dict, "__author__": "denseclip/tools/export_deploy.py"}, output)
    shapes = ", ".join("×".join(map(str, m.deployed_embeddings.shape[1:])) for m in prompts)
    return (
        f"{weights} -> {output}: text encoder replaced by {shapes} text embeddings; "
        f"{full_mb:.1f} MB of tensors -> {_megabytes(state_dict):.1f} MB"
    )


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    parser.add_argument("--weights", required=True, help="the trained model's checkpoint")
    parser.add_argument("--output", required=True, help="the deploy checkpoint to write (.pth)")
    add_config_arguments(
        parser, "register a dataset folder first, as train_net.py does (for its class names)"
    )
    return parser


def main(argv=None):
    args, cfg = parse_config_arguments(argument_parser(), argv)
    print(export_deploy(cfg, args.weights, args.output))


if __name__ == "__main__":
    main()
