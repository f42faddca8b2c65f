"""detectron2's ``DefaultPredictor`` for LazyConfig models, plus open-vocabulary score maps.

>>> predictor = Predictor("configs/Synthetic/denseclip_fpn_demo.py", "output/demo/model_final.pth")
>>> image = denseclip.data.read_image("image.jpg", "BGR")  # upright, 8 bits, errors name the file
>>> outputs = predictor(image)             # {"sem_seg": K×H×W} (or {"instances": ...})
>>> maps = predictor.score_maps(image, ["red circle", "sky"])   # 2×H×W
"""

import argparse
import copy
import logging
import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn import functional as F

from detectron2.config import LazyConfig, instantiate
from detectron2.data import Metadata, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.utils.logger import setup_logger

from ..backbone import DenseCLIPBackbone
from ..checkpoint import DenseCLIPCheckpointer
from ..config import dataset_class_names, default_device, set_class_names
from ..data import parse_dataset_arg, register_folder_dataset
from .fuse import fold_batch_norms
from ..config import apply_overrides

__all__ = [
    "ImagePipeline",
    "Predictor",
    "add_config_arguments",
    "load_config",
    "parse_config_arguments",
]

logger = logging.getLogger(__name__)

_FORMATS = ("BGR", "RGB")


def load_config(
    config_file: str, opts: Sequence[str] = (), datasets: Sequence[str] = ()
) -> DictConfig:
    """A LazyConfig with checked ``key=value`` overrides (:mod:`denseclip.config.overrides`: an unknown
    key or a value of the wrong type stops with the key named), after registering ``NAME=ROOT``
    dataset folders (``--dataset`` of train_net.py), for command-line tools."""
    for spec in datasets:
        register_folder_dataset(*parse_dataset_arg(spec))
    return apply_overrides(LazyConfig.load(config_file), list(opts))


def add_config_arguments(parser, dataset_help: str) -> None:
    """Adds the ``--dataset NAME=ROOT`` and ``--opts key=value ...`` arguments that
    :func:`load_config` takes, for command-line tools."""
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
    :func:`add_config_arguments`), sets up detectron2's loggers and loads the config:
    (args, config)."""
    args = parser.parse_args(argv)
    setup_logger(name="fvcore")
    setup_logger()
    return args, load_config(args.config_file, args.opts, args.dataset)


def _first_name(names) -> Optional[str]:
    if not names:
        return None
    return names if isinstance(names, str) else names[0]


class ImagePipeline:
    """What every predictor does around its model: the config (class prompts from the test
    dataset's metadata, as ``train_net.py --eval-only`` has them), the images' channel order,
    the config's test-time augmentations (:meth:`_inputs`) and the class metadata.

    Args:
        cfg: a LazyConfig file path, or a loaded config (copied, never modified).
        input_format: channel order of the images given to the predictor, "BGR" (OpenCV,
            detectron2's default) or "RGB".
        overrides: ``key=value`` config overrides, checked like train_net.py's
            (:func:`denseclip.config.overrides.apply_overrides`), applied to the (copied) config.

    Attributes:
        cfg: the config with the overrides and the test dataset's class names. input_format.
    """

    def __init__(
        self,
        cfg: Union[str, os.PathLike, DictConfig],
        input_format: str = "BGR",
        overrides: Sequence[str] = (),
    ):
        if input_format not in _FORMATS:
            raise ValueError(f"input_format: expected one of {_FORMATS}, got {input_format!r}")
        if isinstance(cfg, (str, os.PathLike)):
            cfg = LazyConfig.load(os.fspath(cfg))
        else:
            cfg = copy.deepcopy(cfg)
        apply_overrides(cfg, overrides)
        self._test_names = OmegaConf.select(cfg, "dataloader.test.dataset.names")
        class_names = dataset_class_names(self._test_names) if self._test_names else None
        if class_names is not None:
            set_class_names(cfg.model, class_names)
        self.cfg = cfg
        self.input_format = input_format
        mapper = OmegaConf.select(cfg, "dataloader.test.mapper") or {}
        self._model_format = mapper.get("image_format", "BGR")
        self._augmentations = T.AugmentationList(instantiate(mapper.get("augmentations", [])))

    def _find_metadata(self, class_names: Sequence[str]) -> Metadata:
        """The test dataset's metadata when it names classes, else ``class_names`` as
        ``stuff_classes`` and ``thing_classes``."""
        dataset_name = _first_name(self._test_names)
        if dataset_name is not None:
            metadata = MetadataCatalog.get(dataset_name)
            if metadata.get("stuff_classes") or metadata.get("thing_classes"):
                return metadata
        names = list(class_names)
        return Metadata(name="denseclip_predictor", stuff_classes=names, thing_classes=names)

    def _inputs(self, image: np.ndarray) -> Dict:
        """H×W×3 image in ``input_format`` → the model's input dict (resized CHW float tensor,
        ``height`` and ``width`` of the original)."""
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            found = getattr(image, "shape", type(image).__name__)
            raise ValueError(
                f"image: expected an H×W×3 numpy array in {self.input_format} order, got {found}"
            )
        if self.input_format != self._model_format:
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        resized = T.AugInput(np.ascontiguousarray(image))
        self._augmentations(resized)
        tensor = torch.as_tensor(resized.image.astype("float32").transpose(2, 0, 1))
        return {"image": tensor, "height": height, "width": width}


class Predictor(ImagePipeline):
    """Loads a LazyConfig model and its weights once, then predicts one image per call.

    Like detectron2's ``DefaultPredictor``: the image is converted to the model's channel
    order, resized by the config's test-time augmentations
    (``cfg.dataloader.test.mapper.augmentations``), run through the model (with its own slide or
    whole inference) under ``torch.no_grad()``, and the outputs come back at the image's
    resolution. As in ``train_net.py --eval-only``, the class prompts come from the test
    dataset's metadata when it has class names.

    Args:
        cfg: a LazyConfig file path, or a loaded config (copied, never modified).
        weights: checkpoint to load: a training checkpoint, a converted one, or a deploy export
            (``tools/export_deploy.py``); default ``cfg.train.init_checkpoint``. Empty: the model
            keeps its random initialisation (a warning says so).
        input_format: channel order of the images given to the predictor, "BGR" (OpenCV,
            detectron2's default) or "RGB".
        device: "cpu", "cuda", ...; default ``cfg.train.device``.
        fold_bn: fold BatchNorms into the convolutions before them (:mod:`denseclip.inference.fuse`),
            which makes inference faster; outputs equal the unfolded model's up to float
            rounding.
        overrides: ``key=value`` config overrides, checked like train_net.py's
            (:func:`denseclip.config.overrides.apply_overrides`), applied to the (copied) config.

    Threads: one Predictor may be shared by several threads, but it runs one call at a time (a
    lock around the model): the model holds state that calls mutate (the cached class
    embeddings, the pyramid's side outputs). For parallel inference, give each thread its own
    Predictor.

    Attributes:
        model: the eval-mode model. metadata: the test dataset's metadata, or the model's class
        names as ``stuff_classes``. input_format, device.
    """

    def __init__(
        self,
        cfg: Union[str, os.PathLike, DictConfig],
        weights: Optional[str] = None,
        *,
        input_format: str = "BGR",
        device: Optional[str] = None,
        fold_bn: bool = True,
        overrides: Sequence[str] = (),
    ):
        super().__init__(cfg, input_format, overrides)
        cfg = self.cfg
        self.device = device or OmegaConf.select(cfg, "train.device") or default_device()

        self.model = instantiate(cfg.model).to(self.device).eval()
        self._load_weights(
            OmegaConf.select(cfg, "train.init_checkpoint") if weights is None else weights
        )
        if fold_bn:
            fold_batch_norms(self.model)
        self._backbone = next(
            (m for m in self.model.modules() if isinstance(m, DenseCLIPBackbone)), None
        )
        names = list(self._backbone.prompts.class_names) if self._backbone is not None else []
        self.metadata = self._find_metadata(names)
        self._lock = threading.Lock()

    def _load_weights(self, weights: Optional[str]) -> None:
        if not weights:
            logger.warning(
                "Predictor: no weights given (weights=None and train.init_checkpoint is empty); "
                "the model keeps its random initialisation"
            )
            return
        if not os.path.isfile(weights) and "://" not in weights:
            raise FileNotFoundError(f"weights: no checkpoint file at {weights!r}")
        DenseCLIPCheckpointer(self.model).load(weights)

    def __call__(self, image: np.ndarray) -> Dict:
        """image: H×W×3 (``input_format``) → the model's outputs for it, e.g. ``{"sem_seg":
        K×H×W logits}`` or ``{"instances": Instances}`` at the image's resolution."""
        inputs = self._inputs(image)
        with self._lock, torch.no_grad():
            return self.model([inputs])[0]

    @property
    def has_score_maps(self) -> bool:
        """Whether the model has pixel-text score maps (:meth:`class_score_maps`): a DenseCLIP
        model; a CLIP baseline has no text side."""
        return self._backbone is not None

    @property
    def encodes_free_text(self) -> bool:
        """Whether :meth:`score_maps` can encode free text: a DenseCLIP model with its text
        encoder (not a deploy checkpoint of ``tools/export_deploy.py``)."""
        return self._backbone is not None and not self._backbone.prompts.deployed

    @property
    def class_prompts(self) -> List[str]:
        """The K class prompts of a DenseCLIP model, in class order (the texts whose
        :meth:`score_maps` are the model's own class score maps)."""
        return list(self._require_backbone().prompts.class_names)

    def _require_backbone(self) -> DenseCLIPBackbone:
        if self._backbone is None:
            raise ValueError(
                f"score_maps needs a DenseCLIP model, but {type(self.model).__name__} has no "
                "DenseCLIPBackbone (a CLIP baseline config?)"
            )
        return self._backbone

    def class_score_maps(self, image: np.ndarray) -> torch.Tensor:
        """The model's own pixel-text score maps of its K classes on one image, as its forward
        pass computes them (also with a deploy checkpoint, which has no text encoder).

        Args:
            image: H×W×3 in ``input_format``; resized as for ``__call__`` and run whole.
        Returns:
            K×H×W raw cosine similarities in [-1, 1], bilinearly upsampled to the image.
        """
        backbone = self._require_backbone()
        return self._image_score_maps(image, lambda x: backbone(x)["score_map"])

    def score_maps(self, image: np.ndarray, texts: Union[str, Sequence[str]]) -> torch.Tensor:
        """Pixel-text score maps of any prompts on one image (open vocabulary).

        Each prompt goes through the text encoder with the learned contexts (in the class-name
        slot: at most 3 BPE tokens with the default 5-token slot) and the context decoder
        conditioned on this image, beside the K trained classes
        (:meth:`DenseCLIPBackbone.text_score_maps`): a class name gives that class's score map.

        Args:
            image: H×W×3 in ``input_format``; resized as for ``__call__`` and run whole.
            texts: T prompts (or one string).
        Returns:
            T×H×W raw cosine similarities in [-1, 1], bilinearly upsampled to the image.
        """
        backbone = self._require_backbone()
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self._image_score_maps(image, lambda x: backbone.text_score_maps(x, texts))

    def _image_score_maps(self, image: np.ndarray, compute) -> torch.Tensor:
        """``compute``: B×3×H×W normalised images → B×T×h×w score maps; run on one image and
        upsampled to its resolution: T×H×W."""
        inputs = self._inputs(image)
        with self._lock, torch.no_grad():
            images = self.model.preprocess_image([inputs])
            scores = compute(images.tensor)
            scores = F.interpolate(
                scores, size=images.tensor.shape[-2:], mode="bilinear", align_corners=False
            )
            height, width = images.image_sizes[0]
            scores = scores[..., :height, :width]
            if (height, width) != (inputs["height"], inputs["width"]):
                scores = F.interpolate(
                    scores,
                    size=(inputs["height"], inputs["width"]),
                    mode="bilinear",
                    align_corners=False,
                )
        return scores[0]
