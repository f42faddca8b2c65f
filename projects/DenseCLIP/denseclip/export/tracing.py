"""Export of a trained model to one self-contained graph: ONNX (for ONNX Runtime) or TorchScript.

The exported graph takes an image and returns the prediction; it holds the image encoder, the
context decoder and the heads, and the class text embeddings as constants (the class prompts
are deployed first: :func:`~denseclip.checkpoint.deploy.deploy_class_prompts`), never the text
encoder: with post-model prompting the text embeddings depend only on learned parameters. Pre-model
prompting runs the text encoder on every image, so its graph holds the whole model. BatchNorms
are folded as :class:`~denseclip.Predictor` folds them.

Both formats come from one trace (``torch.jit.trace``, and for ONNX the TorchScript-based
``torch.onnx.export(dynamo=False)``, opset :data:`ONNX_OPSET`), of the model's own inference:

- segmentation (:class:`SemanticSegmentationGraph`): B×3×H×W images, raw pixels in the model's
  channel order, with dynamic batch, height and width → B×K×H×W logits (normalisation, padding
  to a multiple of 32 and cropping back are in the graph). Whole inference runs it on the
  image; slide inference runs it on the batch of windows from the project's own window logic
  (:func:`denseclip.meta_arch.segment_image`), see :class:`denseclip.export.ExportedPredictor`.
- detection (detectron2's :class:`~detectron2.export.TracingAdapter`, as detectron2's
  ``tools/deploy/export_model.py``): 3×H×W image (dynamic H, W) → the fields of the detections
  at that size, as the model's own inference gives them: RetinaNet's ``forward``, R-CNN's
  ``inference(do_postprocess=False)`` (masks as 28×28 RoI masks); the caller rescales to the
  original image and pastes the masks (detectron2's ``detector_postprocess``), which cannot be
  traced for a variable number of detections.

The dynamo-based ONNX exporter (``torch.export``) fails on these models: it cannot reason about
the padding of dynamic sizes to multiples of 32, and torch.export needs the text-embedding cache
out of the way; the TorchScript-based exporter handles both. Every export is verified: the
exported graph is run at a second, odd image size and compared with the eager model, so that a
graph that only fits its trace size (e.g. detectron2's Swin, whose window padding and attention
masks are Python integers of the input size) is never written silently.
"""

import copy
import io
import logging
import os
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from detectron2.export import TracingAdapter
from detectron2.export.flatten import InstancesSchema, TensorWrapSchema
from detectron2.modeling import GeneralizedRCNN
from detectron2.modeling.backbone import SwinTransformer

from ..backbone import DenseCLIPBackbone
from ..checkpoint.deploy import DeployedClassPrompts, deploy_class_prompts
from ..clip import CLIPViTDet
from ..clip.transformer import ResidualAttentionBlock
from ..inference.fuse import fold_batch_norms
from ..meta_arch import DenseCLIPSemanticSegmentor
from ..prompting import ClassTextPrompts
from .metadata import METADATA_KEY, ExportMetadata
from .runtime import ExportedGraph

__all__ = [
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "SemanticSegmentationGraph",
    "export_model",
    "graph_model",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("onnx", "torchscript")
#: ONNX opset: LayerNormalization (17) and RoIAlign with half-pixel (aligned) coordinates (16).
ONNX_OPSET = 17
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.ts"}
#: Default traced and verification image sizes: odd, neither a multiple of 32, landscape and
#: portrait, small enough for detection configs whose positional embedding is cropped.
TRACE_SIZE = (100, 124)
VERIFY_SIZE = (123, 81)


class SemanticSegmentationGraph(nn.Module):
    """The segmentor's window model as one graph: raw images → logits of the same size.

    Args:
        model: an eval-mode :class:`~denseclip.meta_arch.DenseCLIPSemanticSegmentor`.
    """

    def __init__(self, model: DenseCLIPSemanticSegmentor):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: B×3×H×W pixels in the model's channel order (any H, W) → B×K×H×W logits,
        the model's ``encode_decode`` of the normalised images."""
        normalised = (images - self.model.pixel_mean) / self.model.pixel_std
        return self.model.encode_decode(normalised)


def _check_exportable(model: nn.Module) -> None:
    """Refuses, with the reason, what cannot become a size-independent graph."""
    if any(isinstance(m, SwinTransformer) for m in model.modules()):
        raise ValueError(
            f"{type(model).__name__} has a detectron2 SwinTransformer backbone, which cannot be "
            "exported: it computes its window padding and attention masks with Python integers "
            "of the input size, so a traced graph only fits the traced image size (and the ONNX "
            "exporter fails on it); use the eager model (denseclip.Predictor)"
        )
    vitdet = any(isinstance(m, CLIPViTDet) for m in model.modules())
    if vitdet and not model.backbone.padding_constraints.get("square_size", 0):
        raise ValueError(
            f"{type(model).__name__} has a windowed CLIP ViT (CLIPViTDet) whose batches are not "
            "padded to a fixed square: its window padding and positional-embedding resize are "
            "Python integers of the input size, so a traced graph would only fit the traced "
            "image size. Export it with a fixed input size, model.backbone.square_pad=S (S at "
            "least the longest resized image side; the COCO ViT-B configs pad to 1024, as "
            "ViTDet), or use the eager model (denseclip.Predictor)"
        )
    if not isinstance(model, (DenseCLIPSemanticSegmentor, GeneralizedRCNN)) and not hasattr(
        model, "head_in_features"
    ):
        raise ValueError(
            f"cannot export a {type(model).__name__}: expected a DenseCLIPSemanticSegmentor, a "
            "RetinaNet or a GeneralizedRCNN (the meta-architectures of the configs)"
        )


def graph_model(model: nn.Module) -> Tuple[nn.Module, bool]:
    """A copy of an eval-mode model made ready to trace: class prompts deployed
    (:class:`~denseclip.checkpoint.deploy.DeployedClassPrompts`: their K×C text embeddings
    become constants, the text encoder is dropped), BatchNorms folded, CLIP
    transformer attention written out for tracing (``traceable_attention``).

    Returns:
        (the copy, whether it still holds the text encoder: pre-model prompting only).
    """
    _check_exportable(model)
    model = copy.deepcopy(model).eval()
    text_in_graph = False
    for backbone in [m for m in model.modules() if isinstance(m, DenseCLIPBackbone)]:
        if backbone.prompting == "pre":
            text_in_graph = True
            logger.warning(
                "pre-model prompting runs the text encoder on every image: the exported graph "
                "holds the whole text encoder (%.1f M parameters)",
                sum(p.numel() for p in backbone.prompts.parameters()) / 1e6,
            )
        else:
            deploy_class_prompts(backbone)
    fold_batch_norms(model)
    for block in model.modules():
        if isinstance(block, ResidualAttentionBlock):
            block.traceable_attention = True
    return model, text_in_graph


def _class_names(model: nn.Module) -> List[str]:
    for module in model.modules():
        if isinstance(module, (ClassTextPrompts, DeployedClassPrompts)):
            return list(module.class_names)
    return []


def _detection_inference(model: nn.Module):
    """The model's own inference of one image, before the rescaling to the original size."""
    if isinstance(model, GeneralizedRCNN):
        return lambda model, image: model.inference([{"image": image}], do_postprocess=False)[0]
    return lambda model, image: model([{"image": image}])[0]["instances"]


def _traceable(
    model: nn.Module, sample: torch.Tensor, class_names: Sequence[str]
) -> Tuple[nn.Module, ExportMetadata]:
    """The module to trace and the metadata of its graph."""
    if isinstance(model, DenseCLIPSemanticSegmentor):
        graph = SemanticSegmentationGraph(model).eval()
        with torch.no_grad():
            names = class_names or [str(k) for k in range(graph(sample).shape[1])]
        metadata = ExportMetadata(
            "sem_seg",
            list(names),
            ["images"],
            ["sem_seg"],
            test_mode=model.test_mode,
            crop_size=tuple(model.crop_size),
            stride=tuple(model.stride),
        )
        return graph, metadata
    adapter = TracingAdapter(model, sample, _detection_inference(model)).eval()
    detections = adapter(sample)
    schema = adapter.outputs_schema
    if not isinstance(schema, InstancesSchema):
        raise ValueError(f"{type(model).__name__}: expected Instances from inference, got {schema}")
    if len(detections[0]) == 0:
        raise ValueError(
            "the sample image gives no detections, so the traced post-processing (NMS) would "
            "only fit empty outputs: export with a sample image that shows objects "
            "(tools/export_model.py --sample-image)"
        )
    boxes = [k for k, s in zip(schema.keys, schema.schemas) if isinstance(s, TensorWrapSchema)]
    num_classes = getattr(model, "num_classes", None) or model.roi_heads.num_classes
    names = class_names or [str(k) for k in range(num_classes)]
    metadata = ExportMetadata(
        "instances",
        list(names),
        ["image"],
        [*schema.keys, "image_size"],
        boxes,
        drop_empty_boxes=getattr(model, "drop_empty_boxes", True),
    )
    return adapter, metadata


def _trace_torchscript(module: nn.Module, sample: torch.Tensor) -> torch.jit.ScriptModule:
    with torch.no_grad():
        return torch.jit.trace(module, (sample,), check_trace=False)


def _export_onnx(module: nn.Module, sample: torch.Tensor, metadata: ExportMetadata) -> bytes:
    import onnx

    if metadata.task == "sem_seg":
        axes = {0: "batch", 2: "height", 3: "width"}
        dynamic_axes = {"images": axes, "sem_seg": axes}
    else:
        dynamic_axes = {"image": {1: "height", 2: "width"}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            module,
            (sample,),
            buffer,
            dynamo=False,
            input_names=metadata.input_names,
            output_names=metadata.output_names,
            dynamic_axes=dynamic_axes,
            opset_version=ONNX_OPSET,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {METADATA_KEY: metadata.to_json()})
    return proto.SerializeToString()


def sample_input(model: nn.Module, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Reproducible random pixels in 0..255 of the graph's input: 2×3×H×W images for a
    segmentor (two windows), one 3×H×W image for a detector."""
    segmentation = isinstance(model, DenseCLIPSemanticSegmentor)
    shape = (2, 3, height, width) if segmentation else (3, height, width)
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 255


def _verification_error(
    module: nn.Module, path: str, metadata: ExportMetadata, sample: torch.Tensor
) -> Optional[str]:
    """Why the exported file does not predict what ``module`` predicts on ``sample``, or None.

    Segmentation: logits within 1e-3 of their range. Detection: as many detections, and the
    same scores (sorted: near-ties may come out in another order)."""
    with torch.no_grad():
        expected = module(sample)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    try:
        found = ExportedGraph(path)(sample)
    except Exception as error:  # ONNX Runtime / TorchScript report shape mismatches this way
        return f"running it failed: {str(error).splitlines()[-1][:300]}"
    for name, want, got in zip(metadata.output_names, expected, found):
        if tuple(want.shape) != tuple(got.shape):
            return f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if metadata.task == "sem_seg":
        want, got = expected[0], found[0]
        tolerance = 1e-3 * float(want.max() - want.min()) + 1e-6
    else:
        index = metadata.output_names.index("scores")
        want, got = expected[index].sort().values, found[index].sort().values
        tolerance = 1e-4
    error = float((want - got).abs().max()) if want.numel() else 0.0
    if error > tolerance:
        return f"{metadata.output_names[0]}: max |difference| {error:.3g} > {tolerance:.3g}"
    return None


def export_model(
    model: nn.Module,
    export_format: str,
    output_dir: str,
    sample: Optional[torch.Tensor] = None,
    class_names: Optional[Sequence[str]] = None,
    verify: bool = True,
) -> Tuple[str, ExportMetadata]:
    """Exports an eval-mode model (built from a config, weights loaded) to
    ``output_dir/model.onnx`` or ``output_dir/model.ts``.

    Args:
        model: a DenseCLIP / CLIP-baseline segmentor, RetinaNet or GeneralizedRCNN.
        export_format: "onnx" or "torchscript".
        sample: the traced input, raw pixels in the model's channel order: segmentation
            B×3×H×W (a single image is traced with its mirror image beside it), detection
            3×H×W; default random pixels of :data:`TRACE_SIZE` (2 images for segmentation).
            Odd sizes and a batch of 2 keep the trace from specialising to multiples of 32 or
            to one image. A detection sample must give detections.
        class_names: the K class names stored with the graph; default the model's class
            prompts, or 0..K-1 (CLIP baselines).
        verify: check the written file (below).
    Returns:
        (path of the written file, its metadata). With ``verify``, the file is run at the
        traced size and at :data:`VERIFY_SIZE` on other random pixels and must predict what
        the model predicts (RuntimeError otherwise, and the file is removed).
    """
    if export_format not in EXPORT_FORMATS:
        raise ValueError(f"format: expected one of {EXPORT_FORMATS}, got {export_format!r}")
    if model.training:
        raise ValueError("export_model needs an eval-mode model: call model.eval() first")
    prepared, text_in_graph = graph_model(model)
    if sample is None:
        sample = sample_input(prepared, *TRACE_SIZE)
    elif isinstance(prepared, DenseCLIPSemanticSegmentor) and sample.shape[0] == 1:
        # traced on one image, score_maps would take the batch's text embeddings as shared
        sample = torch.cat([sample, sample.flip(-1)])
    module, metadata = _traceable(prepared, sample, class_names or _class_names(model))
    metadata.text_encoder_in_graph = text_in_graph
    metadata.meta_architecture = type(model).__name__
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, FILE_NAMES[export_format])
    if export_format == "onnx":
        with open(path, "wb") as f:
            f.write(_export_onnx(module, sample, metadata))
    else:
        traced = _trace_torchscript(module, sample)
        torch.jit.save(traced, path, _extra_files={METADATA_KEY: metadata.to_json()})
    for height, width in (TRACE_SIZE, VERIFY_SIZE) if verify else ():
        check = sample_input(prepared, height, width, seed=1)
        error = _verification_error(module, path, metadata, check)
        if error is not None:
            os.remove(path)
            raise RuntimeError(
                f"the exported {type(model).__name__} does not predict what the model predicts "
                f"on a {height}×{width} image ({error}): its graph does not generalise over "
                f"image sizes, so {path} was not kept"
            )
    return path, metadata
