"""How the benchmark runs a model: the device, mixed precision and attention kernel of every
forward, an inference call and a training forward + backward."""

import contextlib
import dataclasses
from typing import Callable, Dict, List

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from detectron2.utils.events import EventStorage

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class ForwardSettings:
    """Where and with which numerics the benchmarked forwards run.

    Attributes:
        device: "cpu", "cuda", "cuda:1", ...
        amp: "none" (fp32) or a key of :data:`AMP_DTYPES`: autocast to that dtype.
        attention_kernel: "fused" (``scaled_dot_product_attention`` as PyTorch picks it) or
            "math" (its math kernel, the attention matrix materialised).
    """

    device: str
    amp: str = "none"
    attention_kernel: str = "fused"

    @contextlib.contextmanager
    def scope(self):
        """Mixed precision and the attention kernel, for the forwards run inside."""
        with contextlib.ExitStack() as stack:
            if self.amp != "none":
                device = torch.device(self.device).type
                stack.enter_context(torch.autocast(device, dtype=AMP_DTYPES[self.amp]))
            if self.attention_kernel == "math":
                stack.enter_context(sdpa_kernel(SDPBackend.MATH))
            yield


def inference_run(
    model: nn.Module, inputs: List[Dict], settings: ForwardSettings
) -> Callable[[], List[Dict]]:
    """A call of the model on ``inputs`` without gradients, as it is timed."""

    def run():
        with torch.no_grad(), settings.scope():
            return model(inputs)

    return run


def training_loss(model: nn.Module, batch: List[Dict], settings: ForwardSettings) -> torch.Tensor:
    """One training forward: the sum of the losses; detectors log to an event storage."""
    with EventStorage(), settings.scope():
        losses = model(batch)
    return sum(losses.values())


def forward_backward(model: nn.Module, batch: List[Dict], settings: ForwardSettings) -> None:
    """One training forward (losses) and backward."""
    training_loss(model, batch, settings).backward()
