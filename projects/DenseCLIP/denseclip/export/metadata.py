"""What an exported graph predicts, stored beside it in the exported file: the JSON that
:func:`denseclip.export.export_model` writes and :class:`denseclip.export.ExportedGraph` reads."""

import dataclasses
import json
from typing import List, Tuple

__all__ = ["METADATA_KEY", "ExportMetadata"]

#: Name of the JSON metadata: an ONNX ``metadata_props`` key, a TorchScript extra file.
METADATA_KEY = "denseclip_export"


@dataclasses.dataclass
class ExportMetadata:
    """What a runtime needs besides the graph, stored in the exported file as JSON.

    Attributes:
        task: "sem_seg" or "instances".
        class_names: the K classes of the graph's outputs.
        input_names, output_names: the graph's inputs and outputs, in order.
        boxes: outputs that are detectron2 :class:`~detectron2.structures.Boxes` (detection).
        text_encoder_in_graph: True only for pre-model prompting.
        meta_architecture: the exported model's class name.
        test_mode, crop_size, stride: the segmentor's inference ("slide" or "whole"), window
            and step, which the runtime's window driver follows.
        drop_empty_boxes: the detector's final rescaling drops boxes that are empty after
            clipping (detectron2) or keeps them (mmdet;
            :func:`~denseclip.meta_arch.rescale_detections`).
    """

    task: str
    class_names: List[str]
    input_names: List[str]
    output_names: List[str]
    boxes: List[str] = dataclasses.field(default_factory=list)
    text_encoder_in_graph: bool = False
    meta_architecture: str = ""
    test_mode: str = "whole"
    crop_size: Tuple[int, int] = (0, 0)
    stride: Tuple[int, int] = (0, 0)
    drop_empty_boxes: bool = True

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str, source: str) -> "ExportMetadata":
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: unreadable {METADATA_KEY!r} metadata ({error})") from None
