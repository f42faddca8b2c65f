"""Mixed precision: every model type trains and predicts under bfloat16 autocast.

There is no GPU here: ``torch.autocast("cpu", dtype=torch.bfloat16)`` runs the same autocast
machinery (matmuls and convolutions in bfloat16, reductions and losses in float32), which is
what exposes dtype mismatches in our modules (attention pool, text encoder, context decoder,
score maps, losses, TTA).

"Agrees with float32" (the tiny models, random weights, synthetic images):
- segmentation: the per-pixel argmax of the logits is the same on ≥ 97 % of the pixels
  (measured 98.0–100 % over the 8 model types × 4 images of 128², lowest for pre-model
  prompting, whose text encoder runs on every image under autocast);
- detection: the untrained tiny detectors score every box alike (≈ the prior) and leave it on
  its anchor, so their class and box layers are re-drawn to spread (logits of std ≈ 3, box
  deltas ≈ 0.5, as trained ones). Which boxes make the top-k is still decided by near-ties, so
  compared are: every pyramid level the heads read (≤ 2 % relative L2 error, measured
  0.6–0.8 %), the class logits and box deltas of every anchor (R-CNN: of float32's proposals)
  (≤ 3 %, measured 0.5–1.7 %), and the top-10 scores (≤ 2 % relative error, measured ≤ 0.7 %,
  ranking-free), with as many detections as float32.
"""

import copy

import pytest
import torch

from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from tiny_models import ALL, DETECTION, SEGMENTATION, build_model

from denseclip.data.synthetic import generate_sample
from denseclip.meta_arch import SemanticSegmentorWithTTA

pytestmark = pytest.mark.usefixtures("single_torch_thread")

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
SIZE = (64, 96)


@pytest.fixture(scope="module")
def model(request, load_tiny_config):
    """The tiny model of ``request.param`` in eval mode; segmentation trains on 64² crops."""
    model = build_model(load_tiny_config, request.param)
    if request.param in SEGMENTATION:
        model.crop_size = (64, 64)
    return model


def synthetic_image(index=0, size=SIZE):
    """3×H×W float RGB image of the synthetic dataset (shapes in a landscape)."""
    bgr, _ = generate_sample(seed=0, split_index=1, index=index, image_size=size)
    return torch.as_tensor(bgr[:, :, ::-1].copy().transpose(2, 0, 1)).float()


def training_inputs(segmentation: bool):
    """One synthetic image with random labels (segmentation) or two boxes with their masks."""
    height, width = SIZE
    inputs = {"image": synthetic_image()}
    if segmentation:
        generator = torch.Generator().manual_seed(0)
        inputs["sem_seg"] = torch.randint(0, 5, SIZE, generator=generator)
        return [inputs]
    boxes = torch.tensor([[10.0, 10.0, 50.0, 40.0], [40.0, 20.0, 90.0, 60.0]])
    masks = torch.zeros(2, height, width, dtype=torch.bool)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = True
    instances = Instances(SIZE)
    instances.gt_boxes, instances.gt_classes = Boxes(boxes), torch.tensor([0, 2])
    instances.gt_masks = BitMasks(masks)
    inputs["instances"] = instances
    return [inputs]


@pytest.mark.parametrize("model", ALL, indirect=True)
def test_a_training_step_under_autocast_gives_finite_float32_losses_and_gradients(model):
    segmentation = hasattr(model, "test_mode")
    model.train()
    try:
        with EventStorage(), torch.autocast(**BF16):
            losses = model(training_inputs(segmentation))
        assert losses
        for name, loss in losses.items():
            assert loss.dtype == torch.float32 and torch.isfinite(loss), (name, loss)
        sum(losses.values()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert grads
        assert all(torch.isfinite(g).all() for g in grads.values())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@pytest.mark.parametrize("model", SEGMENTATION, indirect=True)
def test_segmentation_argmax_under_autocast_agrees_with_float32(model):
    inputs = [{"image": synthetic_image()}]
    with torch.no_grad():
        expected = model(inputs)[0]["sem_seg"]
        with torch.autocast(**BF16):
            logits = model(inputs)[0]["sem_seg"]
    assert torch.isfinite(logits).all()
    agreement = (logits.argmax(0) == expected.argmax(0)).float().mean().item()
    assert agreement >= 0.97, agreement


def relative_error(ours: torch.Tensor, expected: torch.Tensor) -> float:
    return ((ours.float() - expected).norm() / expected.norm()).item()


def spread_predictions_(model, inputs, logit_std=3.0, delta_std=0.5):
    """Re-draws the detector's class and box layers (RetinaNet's ``head``, R-CNN's box
    predictor) so that on ``inputs`` the class logits spread with about ``logit_std`` and the
    box deltas with ``delta_std``, as a trained detector's do: untrained, every box scores the
    prior and sits on its anchor, which no comparison can tell from a broken one."""
    predictor = model.head if hasattr(model, "head") else model.roi_heads.box_predictor
    seen = []
    handle = predictor.cls_score.register_forward_pre_hook(lambda m, x: seen.append(x[0]))
    with torch.no_grad():
        model(inputs)
        handle.remove()
        features_std = torch.cat([x.flatten() for x in seen]).std().item()
        for layer, std in ((predictor.cls_score, logit_std), (predictor.bbox_pred, delta_std)):
            layer.weight.normal_(std=std / (features_std * layer.weight[0].numel() ** 0.5))
    return predictor


def flat(outputs) -> torch.Tensor:
    """A predictor's class or box outputs (per level for RetinaNet) as one vector."""
    return (
        torch.cat([x.flatten() for x in outputs])
        if isinstance(outputs, list)
        else outputs.flatten()
    )


@pytest.mark.parametrize("model", DETECTION, indirect=True)
def test_detection_under_autocast_agrees_with_float32(model, monkeypatch):
    inputs = [{"image": synthetic_image()}]
    model = copy.deepcopy(model)  # the module's model keeps its weights
    torch.manual_seed(0)
    predictor = spread_predictions_(model, inputs)
    if hasattr(model, "test_score_thresh"):
        monkeypatch.setattr(model, "test_score_thresh", 0.0)
    else:  # Mask R-CNN: 10 detections, 10 masks (bfloat16 convolutions are slow on CPUs)
        monkeypatch.setattr(model.roi_heads.box_predictor, "test_topk_per_image", 10)
    pyramids, predictions, proposals = [], [], []

    def same_proposals(module, args, output):
        """Autocast's R-CNN heads get float32's proposals: same RoIs, comparable outputs."""
        return proposals[0] if proposals else proposals.append(output)

    handles = [
        model.backbone.register_forward_hook(lambda m, x, out: pyramids.append(out)),
        predictor.register_forward_hook(lambda m, x, out: predictions.append(out)),
    ]
    if hasattr(model, "proposal_generator"):
        handles.append(model.proposal_generator.register_forward_hook(same_proposals))
    try:
        with torch.no_grad():
            reference = model(inputs)[0]["instances"]
            with torch.autocast(**BF16):
                mixed = model(inputs)[0]["instances"]
    finally:
        for handle in handles:
            handle.remove()
    expected_pyramid, pyramid = pyramids
    for level, features in expected_pyramid.items():
        assert relative_error(pyramid[level], features) <= 0.02, level
    (expected_logits, expected_deltas), (logits, deltas) = predictions
    assert flat(expected_logits).std() > 1 and flat(expected_deltas).std() > 0.2  # they spread
    assert relative_error(flat(logits), flat(expected_logits)) <= 0.03
    assert relative_error(flat(deltas), flat(expected_deltas)) <= 0.03
    assert len(mixed) == len(reference) > 0
    assert torch.isfinite(mixed.pred_boxes.tensor).all()
    top_scores = mixed.scores[:10].float()
    torch.testing.assert_close(top_scores, reference.scores[:10], rtol=0.02, atol=0)


@pytest.mark.parametrize("model", ["denseclip_resnet"], indirect=True)
def test_float32_inference_after_autocast_inference_is_unchanged(model):
    """The cached class embeddings computed under autocast (bfloat16) are not reused."""
    inputs = [{"image": synthetic_image()}]
    with torch.no_grad():
        before = model(inputs)[0]["sem_seg"]
        with torch.autocast(**BF16):
            assert model(inputs)[0]["sem_seg"].dtype == torch.bfloat16
        assert torch.equal(model(inputs)[0]["sem_seg"], before)


@pytest.mark.parametrize("model", ["denseclip_resnet"], indirect=True)
def test_tta_under_autocast_averages_float32_probabilities(model):
    tta = SemanticSegmentorWithTTA(model, scales=(0.5, 1.0), flip=False, base_size=(128, 96))
    inputs = [{"image": synthetic_image(), "height": SIZE[0], "width": SIZE[1]}]
    with torch.no_grad():
        expected = tta(inputs)[0]["sem_seg"]
        with torch.autocast(**BF16):
            probs = tta(inputs)[0]["sem_seg"]
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(0), torch.ones(SIZE))
    agreement = (probs.argmax(0) == expected.argmax(0)).float().mean().item()
    assert agreement >= 0.97, agreement
