"""Deployment: a trained model traced to one ONNX or TorchScript graph (:mod:`.tracing`), and the
graph run with the predictor's pre- and post-processing (:mod:`.runtime`); the file's
:class:`ExportMetadata` (:mod:`.metadata`) says what the graph predicts."""

from .metadata import ExportMetadata
from .runtime import BACKENDS, ExportedGraph, ExportedPredictor
from .tracing import EXPORT_FORMATS, ONNX_OPSET, export_model, graph_model

__all__ = [
    "BACKENDS",
    "EXPORT_FORMATS",
    "ExportMetadata",
    "ExportedGraph",
    "ExportedPredictor",
    "ONNX_OPSET",
    "export_model",
    "graph_model",
]
