"""What the benchmark times: the inference variants of DenseCLIP and of its CLIP baseline."""

import copy
import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from detectron2.config import instantiate

from ...backbone import DenseCLIPBackbone
from ...checkpoint import DenseCLIPCheckpointer
from ...export import ExportedPredictor, export_model
from ...inference.fuse import fold_batch_norms
from ...prompting import ClassTextPrompts


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    baseline: bool  # CLIP + Semantic FPN, no text side
    official_text: bool  # the text encoder runs at every forward
    fold_bn: bool  # our inference path
    exported: bool = False  # the ONNX export of the model, run by ONNX Runtime


VARIANTS = {
    v.name: v
    for v in (
        Variant("denseclip", "cached text, BN folded (ours)", False, False, True),
        Variant("denseclip-unfolded", "cached text, official image path", False, False, False),
        Variant("denseclip-official", "text encoder every forward (official)", False, True, False),
        Variant("baseline", "CLIP + Semantic FPN, BN folded", True, False, True),
        Variant("baseline-unfolded", "CLIP + Semantic FPN (official)", True, False, False),
        Variant("denseclip-onnxruntime", "ONNX export in ONNX Runtime", False, False, True, True),
    )
}


class OfficialTextEncoding(nn.Module):
    """The official forward's text side: the text encoder runs at every call (official
    ``DenseCLIP.after_extract_feat``), instead of returning the cached embeddings."""

    def __init__(self, prompts: ClassTextPrompts):
        super().__init__()
        self.prompts = prompts

    def forward(self) -> torch.Tensor:
        """→ 1×K×C class text embeddings, computed afresh."""
        return self.prompts.text_encoder(self.prompts.class_tokens, self.prompts.contexts)


class SimulatedRankText(nn.Module):
    """The training text side of one of R data-parallel ranks with
    ``ClassTextPrompts(shard_text_across_ranks=True)``, in one process: the text encoder
    encodes rank 0's ⌈K/R⌉ classes and copies of that slice stand in for the other ranks'
    (the gather's communication is not simulated)."""

    def __init__(self, prompts: ClassTextPrompts, ranks: int):
        super().__init__()
        self.prompts = prompts
        self.ranks = ranks

    def forward(self) -> torch.Tensor:
        """→ 1×K×C class text embeddings, K of them from ⌈K/R⌉ encoded."""
        return self.prompts.sharded_embeddings(0, self.ranks, lambda shard: [shard] * self.ranks)


def simulate_text_sharding(model: nn.Module, ranks: int) -> None:
    """Gives every DenseCLIP backbone of ``model`` the text side of one of ``ranks`` ranks
    (:class:`SimulatedRankText`); ValueError when there is none to share: pre-model prompting
    runs the text encoder on each image's own contexts."""
    backbones = [m for m in model.modules() if isinstance(m, DenseCLIPBackbone)]
    shared = [b for b in backbones if b.prompting != "pre"]
    if not shared:
        raise ValueError(
            "--simulate-ranks: the model has no class text side shared by its images to split "
            "between ranks (pre-model prompting encodes each image's own prompts)"
        )
    for backbone in shared:
        backbone.prompts = SimulatedRankText(backbone.prompts, ranks)


class ONNXRuntimeSegmentor:
    """The ONNX export of a segmentor behind the model's call interface (a list of input dicts
    → a list of output dicts), run by ONNX Runtime (:class:`ExportedPredictor`)."""

    def __init__(self, model: nn.Module, cfg, export_dir: str):
        path, _ = export_model(model, "onnx", export_dir)
        self.predictor = ExportedPredictor(cfg, path)
        self.file_mb = os.path.getsize(path) / 2**20

    def __call__(self, inputs: List[Dict]) -> List[Dict]:
        return [self.predictor.run(x) for x in inputs]


def model_of(variant: str) -> str:
    """The model a variant runs: "baseline" or "denseclip"."""
    return "baseline" if VARIANTS[variant].baseline else "denseclip"


def load_model(cfg, weights: Optional[str], device: str) -> nn.Module:
    """The config's model in eval mode, with the checkpoint ``weights`` (None: random)."""
    model = instantiate(cfg.model).to(device).eval()
    if weights:
        DenseCLIPCheckpointer(model).load(weights)
    return model


def build_variants(
    names: Sequence[str],
    configs: Mapping[str, object],
    weights: Mapping[str, Optional[str]],
    device: str,
    export_dir: str,
) -> Dict[str, nn.Module]:
    """Eval-mode models of the named variants; unfolded ones share their weights.

    Args:
        configs, weights: the config and checkpoint (None: random weights) of each model,
            keyed by :func:`model_of` ("denseclip", "baseline").
        export_dir: a folder for the ONNX export of the ONNX Runtime variant.
    """
    loaded: Dict[str, nn.Module] = {}
    models = {}
    for name in names:
        variant, model_name = VARIANTS[name], model_of(name)
        if model_name not in loaded:
            loaded[model_name] = load_model(configs[model_name], weights[model_name], device)
        model = loaded[model_name]
        if variant.exported:
            if device != "cpu":
                raise ValueError(f"{name} runs on the CPU only, not --device {device}")
            models[name] = ONNXRuntimeSegmentor(model, configs[model_name], export_dir)
            continue
        if variant.official_text or variant.fold_bn:
            model = copy.deepcopy(model)
        if variant.official_text:
            for backbone in [m for m in model.modules() if isinstance(m, DenseCLIPBackbone)]:
                backbone.prompts = OfficialTextEncoding(backbone.prompts)
        if variant.fold_bn:
            fold_batch_norms(model)
        models[name] = model
    return models


def detection_variants(variants: Sequence[str], default: bool) -> List[str]:
    """The variants a detection config can run: the exported (ONNX Runtime) variant wraps a
    segmentation graph, so it leaves the default list and is refused when asked for."""
    exported = [v for v in variants if VARIANTS[v].exported]
    if exported and not default:
        raise ValueError(
            f"--variants {' '.join(exported)}: the ONNX Runtime variant benchmarks segmentors "
            "only; export a detector with tools/export_model.py and time it apart"
        )
    return [v for v in variants if not VARIANTS[v].exported]


def weights_mb(model) -> float:
    """MiB of a variant's weights: parameters and buffers, or the size of the ONNX file."""
    if isinstance(model, ONNXRuntimeSegmentor):
        return model.file_mb
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20
