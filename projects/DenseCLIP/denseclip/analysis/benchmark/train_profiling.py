"""Where the time of a training step goes: milliseconds per stage of the forward pass and of the
backward pass, the optimizer step, and the same step timed without hooks beside it.

Every moment of a pass is charged to exactly one stage, so a pass's stages add up to its
wall-clock time. Forward: module hooks follow the innermost stage module running. Backward:
autograd runs the graph's nodes one at a time, and a pre-hook on every node charges the time
since the previous change of stage to the stage that was running. A node belongs to the
innermost stage module whose forward created it: autograd numbers the nodes a thread creates
(``Node._sequence_nr``), and the forward hooks record the numbers each stage call created.
"""

import functools
import statistics
import time
from typing import Callable, Dict, List, Mapping, Tuple

import torch
from torch import nn

from ...clip import AttentionPool2d, CLIPTextEncoder
from ...pre_prompting import PreModelPrompting
from ...prompting import ContextDecoder
from .runs import training_loss
from .timing import TrainingStep, sync, timed

IMAGE_ENCODER = "image encoder"
ATTENTION_POOL = "attention pool"
TEXT_ENCODER = "text encoder"
CONTEXT_DECODER = "context decoder"
#: the rest of the bottom-up and of the meta-architecture: score maps and their concatenation,
#: the auxiliary loss, input normalisation (and a detector's own loss computation)
REST = "score maps + aux loss"
#: the rest of the backbone (the FPN) and the heads, with the losses they compute
HEADS = "FPN + head"
STAGES = (IMAGE_ENCODER, ATTENTION_POOL, TEXT_ENCODER, CONTEXT_DECODER, REST, HEADS)

#: stage of the modules at these paths: the parts around the method's own modules
STAGE_OF_PATH = {
    "backbone": HEADS,
    "backbone.bottom_up": REST,
    "backbone.bottom_up.image_encoder": IMAGE_ENCODER,
    "sem_seg_head": HEADS,
    "head": HEADS,
    "proposal_generator": HEADS,
    "roi_heads": HEADS,
}
#: stage of the modules of these types, wherever they are (a ViT computes its dense embedding
#: inside the image encoder; pre-model prompting counts as the context decoder)
STAGE_OF_TYPE = (
    (AttentionPool2d, ATTENTION_POOL),
    (CLIPTextEncoder, TEXT_ENCODER),
    (ContextDecoder, CONTEXT_DECODER),
    (PreModelPrompting, CONTEXT_DECODER),
)


def stage_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(stage, module) of every module of ``model`` that starts a stage."""
    found = []
    for path, module in model.named_modules():
        stage = STAGE_OF_PATH.get(path)
        stage = stage or next((s for t, s in STAGE_OF_TYPE if isinstance(module, t)), None)
        if stage:
            found.append((stage, module))
    return found


class StageClock:
    """Wall-clock time charged to one stage at a time (CUDA synchronised at every change)."""

    def __init__(self, device: str):
        self.device = device

    def _now(self) -> float:
        sync(self.device)
        return time.perf_counter()

    def start(self) -> None:
        self.ms = dict.fromkeys(STAGES, 0.0)
        self.stage = REST
        self.started = self.since = self._now()

    def switch(self, stage: str) -> None:
        if stage != self.stage:
            now = self._now()
            self.ms[self.stage] += 1000 * (now - self.since)
            self.stage, self.since = stage, now

    def stop(self) -> Dict[str, float]:
        """{stage: ms} since :meth:`start`, and "total": the wall-clock time since then."""
        now = self._now()
        self.ms[self.stage] += 1000 * (now - self.since)
        return {**self.ms, "total": 1000 * (now - self.started)}


class StageHooks:
    """Forward hooks on the :func:`stage_modules`: while :attr:`recording`, they switch the
    clock to the innermost stage running and record the autograd node numbers each stage call
    created (:meth:`stage_of`). Remove them with :meth:`remove`."""

    def __init__(self, model: nn.Module, clock: StageClock):
        self.clock = clock
        self.recording = False
        self.running: List[Tuple[str, int]] = []  # (stage, first node number) of open calls
        self.spans: List[Tuple[int, int, str]] = []  # (first, end, stage) of finished calls
        self.handles = []
        for stage, module in stage_modules(model):
            self.handles.append(
                module.register_forward_pre_hook(functools.partial(self._enter, stage))
            )
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, stage: str, module, inputs) -> None:
        if self.recording:
            # _get_sequence_nr: the number the next node this thread creates will get
            self.running.append((stage, torch.autograd._get_sequence_nr()))
            self.clock.switch(stage)

    def _leave(self, module, inputs, outputs) -> None:
        if self.recording:
            stage, first = self.running.pop()
            self.spans.append((first, torch.autograd._get_sequence_nr(), stage))
            self.clock.switch(self.running[-1][0] if self.running else REST)

    def stage_of(self, number: int) -> str:
        """The stage of the node numbered ``number``: that of the innermost call creating it."""
        holding = [span for span in self.spans if span[0] <= number < span[1]]
        if not holding:
            return REST
        return max(holding, key=lambda span: (span[0], -span[1]))[2]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def hook_backward(loss: torch.Tensor, stage_of: Callable[[int], str], clock: StageClock) -> None:
    """A pre-hook on every node of ``loss``'s graph that switches ``clock`` to the node's stage;
    none on the AccumulateGrad nodes, which store a leaf's gradient right after the node that
    computed it."""
    seen, pending = set(), [loss.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        pending.extend(next_node for next_node, _ in node.next_functions)
        if not hasattr(node, "variable"):  # of the nodes, only AccumulateGrad holds a variable
            stage = stage_of(node._sequence_nr())
            node.register_prehook(lambda grads, stage=stage: clock.switch(stage))


def profiled_step(step: TrainingStep) -> Dict:
    """One training step with the stages timed: {"forward": {stage: ms, "total": ms},
    "backward": {stage: ms, "total": ms}, "optimizer step": ms}."""
    device = step.settings.device
    clock = StageClock(device)
    hooks = StageHooks(step.model, clock)
    try:
        clock.start()
        hooks.recording = True
        loss = training_loss(step.model, step.batch, step.settings)
        hooks.recording = False
        forward = clock.stop()
        hook_backward(loss, hooks.stage_of, clock)
        clock.start()
        loss.backward()
        backward = clock.stop()
    finally:
        hooks.remove()
    optimizer_ms = 1000 * timed(step.optimizer.step, device)
    step.optimizer.zero_grad(set_to_none=True)
    return {"forward": forward, "backward": backward, "optimizer step": optimizer_ms}


def unhooked_step(step: TrainingStep) -> Dict[str, float]:
    """One training step without hooks: {"forward", "backward", "optimizer step"} ms."""
    device = step.settings.device
    losses = []
    forward = timed(
        lambda: losses.append(training_loss(step.model, step.batch, step.settings)), device
    )
    backward = timed(losses.pop().backward, device)
    optimizer = timed(step.optimizer.step, device)
    step.optimizer.zero_grad(set_to_none=True)
    return {
        "forward": 1000 * forward,
        "backward": 1000 * backward,
        "optimizer step": 1000 * optimizer,
    }


def _median(records: List[Dict]) -> Dict:
    """The key-wise median of equally nested dicts of numbers."""
    first = records[0]
    if not isinstance(first, dict):
        return statistics.median(records)
    return {key: _median([r[key] for r in records]) for key in first}


def train_stage_times(steps: Mapping[str, TrainingStep], repeats: int) -> Dict[str, Dict]:
    """{name: profile} of each training step: the median of ``repeats`` profiled steps and as
    many unhooked ones, after an untimed step each. The steps are interleaved (A B C, C B A,
    ...), and so are a step's profiled and unhooked runs (first one, then the other first), so
    that neither always runs right after another model.

    profile: {"forward": {stage: ms, ..., "total": ms}, "backward": {...}, "optimizer step":
    ms, "unhooked": {"forward": ms, "backward": ms, "optimizer step": ms}}; each pass's stages
    add up to its "total", which exceeds the unhooked pass by the hooks' own cost.
    """
    names = list(steps)
    for name in names:
        steps[name]()
    profiled = {name: [] for name in names}
    unhooked = {name: [] for name in names}
    for index in range(repeats):
        for name in names if index % 2 == 0 else names[::-1]:
            runs = [(profiled, profiled_step), (unhooked, unhooked_step)]
            for records, run in runs if index % 2 == 0 else runs[::-1]:
                records[name].append(run(steps[name]))
    return {
        name: {**_median(profiled[name]), "unhooked": _median(unhooked[name])} for name in names
    }
