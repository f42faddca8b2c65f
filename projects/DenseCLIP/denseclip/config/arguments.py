"""The config arguments of the command-line tools: ``--config-file`` (the tool's own),
``--dataset NAME=ROOT`` and ``--opts key=value ...``, loaded with :func:`load_config`."""

import argparse
from typing import Optional, Sequence, Tuple

from omegaconf import DictConfig

from detectron2.utils.logger import setup_logger

from .loading import load_config

__all__ = ["add_config_arguments", "parse_config_arguments"]


def add_config_arguments(parser: argparse.ArgumentParser, dataset_help: str) -> None:
    """Adds the ``--dataset NAME=ROOT`` and ``--opts key=value ...`` arguments that
    :func:`load_config` takes."""
    parser.add_argument(
        "--dataset", action="append", default=[], metavar="NAME=ROOT", help=dataset_help
    )
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config overrides key=value ..."
    )


def parse_config_arguments(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]
) -> Tuple[argparse.Namespace, DictConfig]:
    """Parses ``argv`` with a tool's parser (which has ``--config-file`` and
    :func:`add_config_arguments`), sets up detectron2's and fvcore's loggers and loads the config
    for inference (the test split's class names): (args, config)."""
    args = parser.parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger()
    cfg, _ = load_config(args.config_file, args.opts, args.dataset)
    return args, cfg
