"""Specification of ``ClassTextPrompts(shard_text_across_ranks=True)``: two CPU ranks (gloo) that
each encode half of the classes and gather the embeddings step exactly like one process on the
same global batch (losses and every gradient after DDP's averaging), in float64."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.nn.functional import all_gather
from torch.nn.parallel import DistributedDataParallel

from detectron2.utils.events import EventStorage

from denseclip import prompting
from denseclip.config import load_config

from helpers import (
    REPO_ROOT,
    TINY_CONFIG,
    free_port,
    labelled_batch,
    model_without_batch_statistics,
)

pytestmark = pytest.mark.timeout(600)

RANKS = 2
IMAGES_PER_RANK = 2
SHARDING = "model.backbone.bottom_up.prompts.shard_text_across_ranks=True"
CONTEXTS = "backbone.bottom_up.prompts.contexts"


def _sharded_config():
    """The tiny DenseCLIP config with the key set through the checked overrides."""
    return load_config(os.path.join(REPO_ROOT, TINY_CONFIG), [SHARDING]).cfg


def _gather_without_autograd(shard: torch.Tensor):
    """all_gather's values without its backward: each rank's slice gets only the gradient of
    that rank's own loss (the mistake the autograd gather avoids)."""
    slices = [torch.empty_like(shard) for _ in range(dist.get_world_size())]
    dist.all_gather(slices, shard.detach())
    slices[dist.get_rank()] = shard
    return slices


def _step(model, batch):
    """One training forward and backward: ({loss name: value}, {parameter: gradient}, the
    number of prompts the text encoder encoded at each call)."""
    encoded = []
    text_encoder = model.backbone.bottom_up.prompts.text_encoder
    handle = text_encoder.register_forward_hook(lambda m, args, out: encoded.append(len(args[0])))
    network = DistributedDataParallel(model) if dist.is_initialized() else model
    with EventStorage():
        losses = network(batch)
    sum(losses.values()).backward()
    handle.remove()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return {k: v.detach() for k, v in losses.items()}, grads, encoded


def _rank_steps(rank: int, port: int, state_path: str, out_dir: str) -> None:
    """Rank ``rank``'s step on its images of the global batch, with the autograd gather and
    with :func:`_gather_without_autograd`; saved to ``out_dir/rank{rank}.pt``."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", f"tcp://127.0.0.1:{port}", rank=rank, world_size=RANKS)
    try:
        cfg = _sharded_config()
        state = torch.load(state_path)
        first = rank * IMAGES_PER_RANK
        batch = labelled_batch(cfg.model.sem_seg_head.num_classes)[first : first + IMAGES_PER_RANK]
        results = {}
        for name, gather in (("autograd", all_gather), ("detached", _gather_without_autograd)):
            prompting.all_gather = gather
            model = model_without_batch_statistics(cfg)
            model.load_state_dict(state)
            results[name] = _step(model.train(), batch)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """{"single": the one-process step on the global batch, "ranks": [rank 0's, rank 1's]
    {"autograd", "detached"} steps}."""
    folder = tmp_path_factory.mktemp("text_sharding")
    cfg = _sharded_config()
    torch.manual_seed(0)
    model = model_without_batch_statistics(cfg)
    state_path = str(folder / "state.pt")
    torch.save(model.state_dict(), state_path)
    single = _step(model.train(), labelled_batch(cfg.model.sem_seg_head.num_classes))
    mp.spawn(_rank_steps, args=(free_port(), state_path, str(folder)), nprocs=RANKS)
    ranks = [torch.load(folder / f"rank{r}.pt") for r in range(RANKS)]
    return {"single": single, "ranks": ranks}


def _close(found, expected, name):
    # CLIP's LayerNorm computes in float32 whatever the input (as OpenAI's): what passes through
    # it agrees to float32 precision, the rest to float64 precision
    scale = float(expected.abs().max())
    torch.testing.assert_close(found, expected, rtol=1e-6, atol=1e-6 * scale + 1e-12, msg=name)


def test_each_rank_encodes_its_share_of_the_classes(steps):
    assert steps["single"][2] == [5]  # one process: all K = 5 classes, whatever the key
    for rank in steps["ranks"]:
        assert rank["autograd"][2] == [3]  # ⌈5/2⌉ each, rank 1's last row a padding copy


def test_sharded_ranks_step_like_one_process_on_the_global_batch(steps):
    losses, grads, _ = steps["single"]
    rank_losses = [rank["autograd"][0] for rank in steps["ranks"]]
    rank_grads = [rank["autograd"][1] for rank in steps["ranks"]]
    assert set(losses) == {"loss_sem_seg", "loss_aux_text"}
    for name, value in losses.items():  # equal-sized halves: the mean of the halves' means
        _close(sum(r[name] for r in rank_losses) / RANKS, value, name)
    assert CONTEXTS in grads
    for found in rank_grads:
        assert found.keys() == grads.keys()
        for name, grad in grads.items():
            _close(found[name], grad, name)


def test_without_the_gathers_autograd_the_contexts_gradient_differs(steps):
    """Negative control: each rank's slice then gets only its own loss's gradient."""
    expected = steps["single"][1][CONTEXTS]
    found = steps["ranks"][0]["detached"][1][CONTEXTS]
    assert not torch.allclose(found, expected, rtol=1e-3)
    head = "sem_seg_head.predictor.weight"  # the image side's gradients are unchanged
    _close(steps["ranks"][0]["detached"][1][head], steps["single"][1][head], head)
