"""A DenseCLIP detection training step computes the official step's DenseCLIP-specific parts:
the auxiliary box-target loss, the gradients it sends into the backbone and the text side, and
the neck's input (C5 with the score map / τ concatenated).

Restated independently (``tests/mmdet_reference.py`` on ``tests/official_reference.py``, from
raoyongming/DenseCLIP ``detection/denseclip/denseclip.py``): the CLIP ResNet with its cropped
attention pool, the text encoder with contexts, the context decoder, t + γ·Δt, the score map
divided by τ and concatenated to C5 (``extract_feat``), its bilinear resize to C2's size,
``build_seg_target`` (boxes / 4 truncated, clamped to the grid, box by box) and
``compute_seg_loss`` (BCE of the sigmoid, weighted by the box union, / Σ mask).

Shared with ours: nothing but the weights (copied by name, official → ours, with the official
names written out here) and the batch. The mmdet heads and their losses (focal loss, RPN, RoI
heads) are stock mmdet / detectron2 and are not compared: ours runs its whole training forward
(``model(batched_inputs)`` in training mode) and only its ``loss_aux_box_seg`` is
back-propagated; the neck input is read off our bottom-up with a forward hook.

Precision: both models run in float64, in training mode (BatchNorm on batch statistics) with
the dropouts off. The official CLIP LayerNorm casts its input to float32 (the reference keeps
those LayerNorms' weights in float32, the only way the official code runs); ours computes
float64 inputs in float64. So the neck input and the loss and its gradients agree to float32
round-off (``NECK_INPUT_TOLERANCE``, ``LOSS_TOLERANCE``), far below what the negative
controls at the end move. Mask R-CNN's RPN and RoI heads, which detectron2 cannot run in
float64, run in float32 beside the float64 backbone (:func:`run_heads_in_float32_`).
"""

from typing import Dict, List

import clip.model
import official_reference as ref
import pytest
import torch
from mmdet_reference import OfficialDetector, build_seg_target, compute_seg_loss
from torch import nn

from detectron2.config import instantiate
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

pytestmark = pytest.mark.usefixtures("single_torch_thread")

CONFIGS = ["retinanet_denseclip_tiny", "mask_rcnn_denseclip_tiny"]
STAGES = ["res2", "res3", "res4", "res5"]  # C2..C5
TAU = 0.07
#: our bottom-up's parameter names → the official ones: a prefix each, and two single tensors
OFFICIAL_PREFIXES = {
    "backbone.bottom_up.image_encoder.": "backbone.",
    "backbone.bottom_up.prompts.text_encoder.": "text_encoder.",
    "backbone.bottom_up.context_decoder.": "context_decoder.",
}
OFFICIAL_TENSORS = {
    "backbone.bottom_up.prompts.contexts": "contexts",
    "backbone.bottom_up.gamma": "gamma",
}
NECK_INPUT_TOLERANCE = 2e-7  # max |ours - official| / max |official|: the float32 LayerNorm
LOSS_TOLERANCE = 2e-6  # the same for the loss and each gradient
#: a batch of two images of different sizes (padded to 96×128: C5 is 3×4, so the attention
#: pool crops its 4×4 positional grid), 0..255 RGB, boxes (x1, y1, x2, y2) of different classes
#: that overlap; the last box of image 0 reaches the padded batch's right and bottom border
#: (x2 / 4 = 32, y2 / 4 = 24: clamped to 31 and 23), the first of image 1 its top-left corner
IMAGE_SIZES = [(96, 128), (80, 120)]
BOXES = [
    [[10.7, 5.2, 50.9, 40.1], [30.0, 20.0, 90.5, 70.8], [100.5, 60.3, 128.0, 96.0]],
    [[0.0, 0.0, 33.3, 47.9], [60.0, 40.0, 119.9, 79.9]],
]
CLASSES = [[0, 1, 2], [2, 0]]


def official_name(key: str) -> str:
    if key in OFFICIAL_TENSORS:
        return OFFICIAL_TENSORS[key]
    for ours, official in OFFICIAL_PREFIXES.items():
        if key.startswith(ours):
            return official + key[len(ours) :]
    raise AssertionError(f"no official name for {key}")


def copy_official_weights_(official: nn.Module, ours: nn.Module) -> None:
    """Every parameter of our bottom-up (and each buffer the official model has) from the
    official state dict, by :func:`official_name`; shapes must agree."""
    official_state = official.state_dict()
    parameters = dict(ours.named_parameters())
    copied = {}
    for key, value in ours.state_dict().items():
        if not key.startswith("backbone.bottom_up."):
            continue
        name = official_name(key)
        if name not in official_state:
            assert key not in parameters, f"{key}: no official {name}"
            continue
        assert official_state[name].shape == value.shape, key
        copied[key] = official_state[name]
    ours.load_state_dict(copied, strict=False)


def official_model(class_names) -> OfficialDetector:
    """The official backbone and text side at the tiny configs' sizes (CLIP ResNet of width 16 at
    128², 32 attention-pool heads, embedding 64; text encoder 64 wide, 4 heads, 2 layers, 13
    tokens; context decoder 32 wide, 4 heads, 1 layer), random weights (float32)."""
    official = OfficialDetector(
        backbone=ref.CLIPResNet([1, 1, 1, 1], 16, 64, 128, pos_embed="crop"),
        neck=None,
        text_encoder=ref.CLIPTextContextEncoder(13, 64, 4, 2, 64),
        context_decoder=ref.ContextDecoder(32, 4, 1, 64),
        class_names=class_names,
        tau=TAU,
    )
    return ref.randomize_(official, seed=0)


def to_float64_training_(model: nn.Module) -> nn.Module:
    """float64, training mode, dropouts off; CLIP's (official) LayerNorms keep float32 weights,
    as they compute in float32."""
    model.double().train()
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.eval()
        if isinstance(module, clip.model.LayerNorm):
            module.float()
    return model


def run_heads_in_float32_(model: nn.Module) -> None:
    """Mask R-CNN's RPN and RoI heads in float32, on float32 copies of the pyramid: detectron2's
    ``apply_deltas`` computes in float32, which hands float64 scores and float32 boxes to NMS.
    Neither head is compared; the backbone and the auxiliary loss stay in float64."""
    for name in ("proposal_generator", "roi_heads"):
        head = getattr(model, name, None)
        if head is not None:
            head.float()
            head.register_forward_pre_hook(
                lambda module, args: (
                    args[0],
                    {k: v.float() for k, v in args[1].items()},
                    *args[2:],
                )
            )


def images() -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.rand(3, h, w, generator=generator, dtype=torch.float64) * 255 for h, w in IMAGE_SIZES
    ]


def official_batch(raw: List[torch.Tensor]) -> torch.Tensor:
    """mmdet's training input: each image normalised (CLIP mean / std), zero-padded to the
    batch's largest size (here already a multiple of 32)."""
    mean = torch.tensor(ref.IMG_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(ref.IMG_STD, dtype=torch.float64).view(3, 1, 1)
    height = max(x.shape[1] for x in raw)
    width = max(x.shape[2] for x in raw)
    batch = torch.zeros(len(raw), 3, height, width, dtype=torch.float64)
    for i, x in enumerate(raw):
        batch[i, :, : x.shape[1], : x.shape[2]] = (x - mean) / std
    return batch


def our_batch(raw: List[torch.Tensor]) -> List[Dict]:
    batch = []
    for x, boxes, classes in zip(raw, BOXES, CLASSES):
        instances = Instances(tuple(x.shape[1:]))
        instances.gt_boxes = Boxes(torch.tensor(boxes))
        instances.gt_classes = torch.tensor(classes)
        masks = torch.zeros(len(boxes), *x.shape[1:], dtype=torch.bool)
        for mask, (x1, y1, x2, y2) in zip(masks, instances.gt_boxes.tensor.long().tolist()):
            mask[y1:y2, x1:x2] = True
        instances.gt_masks = BitMasks(masks)
        batch.append(
            {"image": x, "height": x.shape[1], "width": x.shape[2], "instances": instances}
        )
    return batch


def use_official_pixel_statistics_(model: nn.Module) -> None:
    """Our pixel mean and std are float32 buffers: checked against the official values at float32
    precision, then set to them exactly (float64)."""
    for buffer, official in ((model.pixel_mean, ref.IMG_MEAN), (model.pixel_std, ref.IMG_STD)):
        official = torch.tensor(official, dtype=torch.float64).view(3, 1, 1)
        torch.testing.assert_close(buffer, official, rtol=1e-7, atol=0)
        buffer.copy_(official)


@pytest.fixture(scope="module", params=CONFIGS)
def training_step(request, load_tiny_config):
    """One training step of ``config`` and of the official restatement, on the same weights and
    batch; (ours, official) pairs under ``loss`` (the auxiliary loss), ``grads`` ({our parameter
    name: gradient of the auxiliary loss}) and ``neck_inputs`` (the levels our FPN reads: C3–C5
    or C2–C5); and the official ``score_map0``, ``target``, ``img`` and ``num_classes``."""
    cfg = load_tiny_config(request.param)
    cfg.model.backbone.bottom_up.image_encoder.heads = 32  # the official attention pool's
    class_names = list(cfg.model.backbone.bottom_up.prompts.class_names)
    official = official_model(class_names)
    torch.manual_seed(0)
    ours = instantiate(cfg.model)
    copy_official_weights_(official, ours)
    to_float64_training_(official)
    to_float64_training_(ours)
    run_heads_in_float32_(ours)
    use_official_pixel_statistics_(ours)
    raw = images()

    img = official_batch(raw)
    official_inputs, score_map0 = official.extract_feat_with_seg_map(img)
    gt_bboxes = [torch.tensor(b) for b in BOXES]  # float32, as mmdet's and detectron2's
    gt_labels = [torch.tensor(c) for c in CLASSES]
    target, mask = build_seg_target(img.shape, gt_bboxes, gt_labels, len(class_names), img.dtype)
    official_loss = compute_seg_loss(score_map0, target, mask)
    official_loss.backward()

    bottom_up_outputs = {}
    hook = ours.backbone.bottom_up.register_forward_hook(
        lambda module, args, outputs: bottom_up_outputs.update(outputs)
    )
    with EventStorage():
        loss = ours(our_batch(raw))["loss_aux_box_seg"]
    hook.remove()
    loss.backward()

    trainable = [
        key
        for key, param in ours.named_parameters()
        if key.startswith("backbone.bottom_up.") and param.requires_grad
    ]
    levels = ours.backbone.in_features
    return {
        "loss": (loss.detach(), official_loss.detach()),
        "grads": (
            {key: ours.get_parameter(key).grad for key in trainable},
            {key: official.get_parameter(official_name(key)).grad for key in trainable},
        ),
        "neck_inputs": (
            [bottom_up_outputs[level].detach() for level in levels],
            [official_inputs[STAGES.index(level)].detach() for level in levels],
        ),
        "score_map0": score_map0.detach(),
        "target": (target, mask),
        "img": img,
        "num_classes": len(class_names),
    }


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    return ((actual - expected).abs().max() / expected.abs().max()).item()


# ----------------------------------------------------------------------------- equivalence


def test_the_neck_input_is_c5_with_the_score_map_over_tau_as_official(training_step):
    ours, official = training_step["neck_inputs"]
    k = training_step["num_classes"]
    assert official[-1].shape[1] == 16 * 32 + k
    differences = [
        relative_difference(actual, expected) for actual, expected in zip(ours, official)
    ]
    print(f"\nneck inputs: relative differences {differences}")
    assert max(differences) <= NECK_INPUT_TOLERANCE
    assert official[-1][:, -k:].abs().max() > 1  # above any cosine: the compared map is scaled


def test_the_auxiliary_loss_is_the_officials(training_step):
    ours, official = training_step["loss"]
    print(f"\nloss ours {ours.item():.12f}, official {official.item():.12f}")
    assert abs(ours.item() - official.item()) <= LOSS_TOLERANCE * official.item()


def test_the_auxiliary_loss_sends_the_official_gradients_to_every_parameter_it_reaches(
    training_step,
):
    """Every trainable bottom-up parameter (image encoder, contexts, context decoder, γ) gets the
    official gradient, within float32 round-off of the largest entry; the frozen text encoder
    gets none (the official one trains at lr 0). The attention pool's key bias shifts every
    logit of a query's softmax alike, so its gradient is 0 up to round-off on both sides."""
    ours, official = training_step["grads"]
    assert set(ours) == set(official)
    scale = max(g.abs().max().item() for g in official.values())
    groups = dict.fromkeys(["image_encoder.", "context_decoder.", "contexts", "gamma"], 0)
    largest = 0.0
    for key, expected in official.items():
        actual = ours[key]
        assert actual is not None, key
        if key.endswith("attnpool.k_proj.bias"):
            assert max(actual.abs().max(), expected.abs().max()) <= 1e-12 * scale
            continue
        assert expected.abs().max() > 1e-6 * scale, key  # the loss reaches it
        difference = relative_difference(actual, expected)
        largest = max(largest, difference)
        assert difference <= LOSS_TOLERANCE, (key, difference)
        for group in groups:
            groups[group] += key.endswith(group) or f".{group}" in key
    print(f"\n{len(official)} gradients, largest relative difference {largest:.2e}")
    assert all(groups.values()), groups
    assert not any("text_encoder" in key for key in ours)


# ----------------------------------------------------------------------------- negative controls


def test_a_loss_without_the_temperature_would_fail_the_comparison(training_step):
    ours, _ = training_step["loss"]
    target, mask = training_step["target"]
    without_tau = compute_seg_loss(training_step["score_map0"] * TAU, target, mask)
    assert abs(ours.item() - without_tau.item()) > 1000 * LOSS_TOLERANCE * without_tau.item()


def test_a_score_map_concatenated_without_dividing_by_tau_would_fail_the_comparison(
    training_step,
):
    ours, official = training_step["neck_inputs"]
    k = training_step["num_classes"]
    unscaled = official[-1].clone()
    unscaled[:, -k:] *= TAU
    assert relative_difference(ours[-1], unscaled) > 1000 * NECK_INPUT_TOLERANCE


def test_targets_without_the_border_clamp_would_fail_the_comparison(training_step):
    ours, _ = training_step["loss"]
    img, k = training_step["img"], training_step["num_classes"]
    gt_bboxes = [torch.tensor(b) for b in BOXES]  # float32, as mmdet's and detectron2's
    gt_labels = [torch.tensor(c) for c in CLASSES]
    target, mask = build_seg_target(img.shape, gt_bboxes, gt_labels, k, img.dtype, clamp=False)
    unclamped = compute_seg_loss(training_step["score_map0"], target, mask)
    assert abs(ours.item() - unclamped.item()) > 100 * LOSS_TOLERANCE * unclamped.item()
