"""A long-running Predictor: bounded caches, threads, and the soak tool that measures memory.

One Predictor may serve many thousands of calls, each with new free-text prompts for its score
maps: nothing may grow with the inputs (the tokenizer's word cache is a bounded LRU; the class
embeddings are one cached tensor). Threads sharing a Predictor get the outputs of sequential
calls (a lock serialises the model calls). ``tools/soak_predictor.py`` reports the RSS growth
over N calls; it is not part of the suite, a short run is.
"""

import json
import mmap
import threading

import pytest
import torch

from clip.simple_tokenizer import SimpleTokenizer
from helpers import load_python_file

from denseclip import Predictor
from denseclip.clip import text, tokenize_class_names
from denseclip.data.synthetic import generate_sample

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY_CONFIG = "configs/Synthetic/denseclip_fpn_tiny.py"
soak_tool = load_python_file("tools/soak_predictor.py")


def image(index, size=(32, 32)):
    """A BGR synthetic image."""
    return generate_sample(seed=0, split_index=0, index=index, image_size=size)[0]


@pytest.fixture(scope="module")
def predictor(load_tiny_config):
    torch.manual_seed(0)
    return Predictor(load_tiny_config("denseclip_fpn_tiny"), weights="", device="cpu")


# ----------------------------------------------------------------------------- tokenizer cache


@pytest.fixture
def small_tokenizer_cache(monkeypatch):
    """The tokenizer rebuilt with a 4-word cache (and rebuilt as usual afterwards)."""
    monkeypatch.setattr(text, "BPE_CACHE_SIZE", 4)
    text._tokenizer.cache_clear()
    yield text._tokenizer()
    monkeypatch.undo()
    text._tokenizer.cache_clear()


def test_tokenizer_remembers_a_bounded_number_of_words(small_tokenizer_cache):
    words = ["cat", "dog", "sky", "tree", "road", "wall", "lamp", "sofa", "cat", "dog"]
    tokens = tokenize_class_names(words)
    assert small_tokenizer_cache.bpe.cache_info().currsize == 4
    assert len(small_tokenizer_cache.cache) == 2  # SimpleTokenizer's own dict: special tokens
    # forgotten words ("cat", "dog") are encoded again, as OpenAI's tokenizer encodes them
    reference = SimpleTokenizer()
    for row, word in zip(tokens, words):
        assert row[1 : 1 + len(reference.encode(word))].tolist() == reference.encode(word)


def test_tokenizer_keeps_its_special_tokens_whatever_it_forgets(small_tokenizer_cache):
    tokenize_class_names([f"w{letter}" for letter in "abcdefgh"])
    assert small_tokenizer_cache.encode("<|endoftext|>") == [49407]


def test_tokenizer_cache_size_is_bounded_by_default():
    assert text._tokenizer().bpe.cache_info().maxsize == text.BPE_CACHE_SIZE == 8192


def test_new_prompts_on_every_call_do_not_refresh_the_class_embeddings(predictor):
    prompts = predictor.model.backbone.bottom_up.prompts
    predictor.score_maps(image(0), ["sky"])
    cached = prompts._cached
    for call in range(5):
        predictor.score_maps(image(0), soak_tool.new_prompts(call))
    assert prompts._cached is cached


# ----------------------------------------------------------------------------- threads


def test_the_model_runs_under_the_predictor_lock(predictor):
    encoder = predictor.model.backbone.bottom_up.image_encoder
    held = []
    handle = encoder.register_forward_pre_hook(lambda m, x: held.append(predictor._lock.locked()))
    try:
        predictor(image(0))
        predictor.score_maps(image(0), ["sky"])
    finally:
        handle.remove()
    assert held == [True, True]
    assert not predictor._lock.locked()


def test_threads_sharing_a_predictor_get_the_outputs_of_sequential_calls(predictor):
    """4 threads predict and compute score maps of their own prompts while a fifth predicts
    under bfloat16 autocast (which switches the cached class embeddings to bfloat16 for its
    calls): every thread gets what a sequential call gives."""
    prompts = [["sky"], ["red circle", "grass"], soak_tool.new_prompts(7), ["square"]]

    def work(index):
        return predictor(image(index))["sem_seg"], predictor.score_maps(
            image(index), prompts[index]
        )

    expected = [work(index) for index in range(4)]
    start = threading.Barrier(5)
    results, autocast_results, errors = {}, [], []

    def worker(index):
        try:
            start.wait()
            results[index] = [work(index) for _ in range(2)]
        except Exception as error:  # reported below, with the thread's index
            errors.append((index, error))

    def autocast_worker():
        try:
            start.wait()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                for _ in range(3):
                    autocast_results.append(predictor(image(0))["sem_seg"])
        except Exception as error:  # reported below, as the thread "autocast"
            errors.append(("autocast", error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=autocast_worker))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors
    assert len(autocast_results) == 3
    for index, runs in results.items():
        for logits, scores in runs:
            # a race would give bfloat16 class embeddings (errors ~1e-2) or another image
            torch.testing.assert_close(logits, expected[index][0], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(scores, expected[index][1], rtol=1e-5, atol=1e-6)
    assert sorted(results) == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- soak tool


def test_new_prompts_are_new_on_every_call_and_fit_the_class_token_slot():
    prompts = [p for call in range(100) for p in soak_tool.new_prompts(call)]
    assert len(set(prompts)) == 200
    assert tokenize_class_names(prompts).shape == (200, 5)


def leak_one_mib(leaked):
    """Maps 1 MiB of fresh memory and writes it (resident): pages that no allocator reuses."""
    page = mmap.mmap(-1, 2**20)
    page.write(b"\1" * 2**20)
    leaked.append(page)


def test_soak_measures_the_growth_of_a_leaking_call():
    leaked = []
    summary = soak_tool.soak(
        lambda i: leak_one_mib(leaked),
        num_calls=24,
        warmup_calls=4,
        report_every=20,
        log=lambda line: None,
    )
    assert 0.8 * 20 <= summary["growth_mib"] <= 1.5 * 20
    per_1000 = summary["growth_per_1000_calls_mib"]
    assert per_1000 == pytest.approx(summary["growth_mib"] * 1000 / 20, rel=0.01)


def test_soak_tool_reports_flat_memory_for_new_prompts_on_every_call(capsys):
    size, calls, warmup = 512, 20, 4
    args = [
        "--config-file",
        TINY_CONFIG,
        "--weights",
        "",
        "-n",
        str(calls),
        "--warmup",
        str(warmup),
    ]
    summary = soak_tool.main(
        [*args, "--report-every", "8", "--prompts", "new", "--size", str(size), str(size)]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    reports = [line for line in lines if line.startswith("after")]
    assert [line.split("RSS")[0].split() for line in reports] == [
        ["after", "4", "warm-up", "calls:"],
        ["after", "8", "calls:"],
        ["after", "16", "calls:"],
        ["after", "20", "calls:"],
    ]
    assert json.loads(lines[-1]) == summary
    assert summary["calls"] == calls and summary["prompts"] == "new"
    # the model's float32 input is 3 MiB a call (its logits 5 MiB): a leak of a sixth of the
    # input a call adds 8 MiB over the 16 measured calls; allocator noise stays under a few MiB
    input_mib = 3 * size * size * 4 / 2**20
    bound = (calls - warmup) * input_mib / 6
    assert bound == 8
    assert summary["growth_mib"] < bound
