"""Running an exported model (``tools/export_model.py``) with the predictor's pre- and
post-processing.

>>> predictor = ExportedPredictor("configs/Synthetic/denseclip_fpn_tiny.py", "export/model.onnx")
>>> outputs = predictor(cv2.imread("image.jpg"))        # as denseclip.Predictor's outputs

The graph runs in ONNX Runtime (``.onnx``) or TorchScript (``.ts``); the file's metadata says
what it predicts. Around it, the same steps as :class:`~denseclip.Predictor`: the config's
test-time resize and channel order, then for segmentation the project's own whole or slide
inference (:func:`denseclip.meta_arch.segment_image`, the windows batched into one run of the
graph) and the resize to the image; for detection the model's final rescaling
(:func:`~denseclip.meta_arch.rescale_detections`: boxes rescaled and clipped, masks pasted, empty
boxes dropped as detectron2 does or kept as mmdet does, as the exported model did).
"""

import os
import zipfile
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from omegaconf import DictConfig

from detectron2.structures import Boxes, Instances

from ..inference.predictor import ImagePipeline
from ..meta_arch import rescale_detections, segment_image
from .metadata import METADATA_KEY, ExportMetadata

__all__ = ["BACKENDS", "ExportedGraph", "ExportedPredictor"]

BACKENDS = ("onnxruntime", "torchscript")


class ExportedGraph:
    """An exported file, called on torch tensors.

    Args:
        path: a ``model.onnx`` (run by ONNX Runtime) or ``model.ts`` (TorchScript) written by
            :func:`denseclip.export.export_model`.
        threads: intra-op threads of ONNX Runtime; default torch's (as the eager model runs).
        providers: ONNX Runtime execution providers; default all available ones.

    Attributes:
        path. metadata: the file's :class:`~denseclip.export.ExportMetadata`. backend:
        "onnxruntime" or "torchscript".
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
    ):
        path = os.fspath(path)
        self.path = path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"exported model: no file at {path!r}")
        if zipfile.is_zipfile(path):
            self.backend = "torchscript"
            extra = {METADATA_KEY: ""}
            self._module = torch.jit.load(path, map_location="cpu", _extra_files=extra)
            text = extra[METADATA_KEY]
        else:
            import onnxruntime

            self.backend = "onnxruntime"
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            self._session = onnxruntime.InferenceSession(
                path, options, providers=providers or onnxruntime.get_available_providers()
            )
            text = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "")
        if not text:
            raise ValueError(
                f"{path}: no {METADATA_KEY!r} metadata; expected a file written by "
                "tools/export_model.py"
            )
        self.metadata = ExportMetadata.from_json(text, path)

    def __call__(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x: the graph's input (pixels, any dtype: taken as float32) → its outputs, in
        ``metadata.output_names`` order."""
        x = x.detach().cpu().float()
        if self.backend == "torchscript":
            with torch.no_grad():
                outputs = self._module(x)
            return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        feed = {self.metadata.input_names[0]: x.numpy()}
        return [torch.from_numpy(np.asarray(o)) for o in self._session.run(None, feed)]

    def instances(self, outputs: Sequence[torch.Tensor]) -> Instances:
        """A detection graph's outputs → detectron2 Instances at the graph input's size."""
        fields = dict(zip(self.metadata.output_names, outputs))
        image_size = tuple(int(v) for v in fields.pop("image_size"))
        for name in self.metadata.boxes:
            fields[name] = Boxes(fields[name])
        return Instances(image_size, **fields)


class ExportedPredictor(ImagePipeline):
    """:class:`~denseclip.Predictor` for an exported model: one image per call, same outputs.

    Args:
        cfg: the config the model was exported from (a path or a loaded config): its test-time
            augmentations, channel order and dataset metadata; the model is not built.
        exported: the exported file (``model.onnx`` or ``model.ts``).
        input_format: "BGR" or "RGB", the channel order of the images given to the predictor.
        threads, providers: see :class:`ExportedGraph`.

    Attributes:
        graph: the :class:`ExportedGraph`. backend: "onnxruntime" or "torchscript".
        metadata: the test dataset's metadata, or the exported class names.
    """

    def __init__(
        self,
        cfg: Union[str, os.PathLike, DictConfig],
        exported: Union[str, os.PathLike],
        *,
        input_format: str = "BGR",
        threads: Optional[int] = None,
        providers: Optional[Sequence[str]] = None,
    ):
        super().__init__(cfg, input_format)
        self.graph = ExportedGraph(exported, threads, providers)
        self.backend = self.graph.backend
        names = self.graph.metadata.class_names
        self.metadata = self._find_metadata(names)
        expected = self.metadata.get("stuff_classes") or self.metadata.get("thing_classes")
        if expected and len(expected) != len(names):
            raise ValueError(
                f"{os.fspath(exported)} predicts {len(names)} classes ({', '.join(names[:5])}"
                f"{', ...' if len(names) > 5 else ''}), but the config's test dataset has "
                f"{len(expected)}: was it exported from another config or dataset?"
            )

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.graph(images)[0]

    def __call__(self, image: np.ndarray) -> Dict:
        """image: H×W×3 (``input_format``) → ``{"sem_seg": K×H×W logits}`` or ``{"instances":
        Instances}`` at the image's resolution, as :class:`~denseclip.Predictor` returns."""
        return self.run(self._inputs(image))

    def run(self, inputs: Dict) -> Dict:
        """One model input dict (``image``: the resized 3×h×w pixels in the model's channel
        order, ``height`` and ``width`` of the output) → the model's output dict for it."""
        output_size = (inputs.get("height", inputs["image"].shape[-2]),)
        output_size += (inputs.get("width", inputs["image"].shape[-1]),)
        meta = self.graph.metadata
        with torch.no_grad():
            if meta.task == "sem_seg":
                logits = segment_image(
                    inputs["image"][None],
                    self._encode,
                    meta.test_mode,
                    tuple(meta.crop_size),
                    tuple(meta.stride),
                    output_size,
                )
                return {"sem_seg": logits[0]}
            instances = self.graph.instances(self.graph(inputs["image"]))
            return {"instances": rescale_detections(instances, *output_size, meta.drop_empty_boxes)}
