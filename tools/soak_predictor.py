#!/usr/bin/env python
"""Soak test: one denseclip.Predictor called N times; reports the growth of its memory (RSS).

    python tools/soak_predictor.py --config-file configs/Synthetic/denseclip_fpn_demo.py \\
        --weights output/demo/model_final.pth -n 10000 --prompts new

Every call predicts one synthetic image (--size H W). --prompts chooses what else it does:
"none" (only the prediction), "fixed" (also the open-vocabulary score maps of the same two
prompts every call) or "new" (score maps of two prompts never seen before on every call, three
letters each: the tokenizer and the text encoder meet new words until the 17576 three-letter
words are used up). The resident set size (RSS) is measured after --warmup calls (allocators and
caches fill up first), then every --report-every calls; the last line is one JSON object:

    {"calls": N, "warmup_calls": W, "rss_after_warmup_mib": ..., "rss_end_mib": ...,
     "growth_mib": ..., "growth_per_1000_calls_mib": ..., "prompts": "new"}

Flat memory means growth_mib near 0 whatever N. --max-growth-mib X exits with status 1 when the
growth is larger than X (for CI). --prompts fixed/new need a DenseCLIP model (score maps).
RSS is read from /proc/self/statm (Linux); elsewhere the peak RSS (getrusage) stands in for it.
"""

import argparse
import gc
import itertools
import json
import os
import string
import sys
from typing import Callable, Dict, List

from detectron2.utils.logger import setup_logger

from denseclip import Predictor
from denseclip.data.synthetic import generate_sample
from denseclip.config import add_config_arguments, load_config

PROMPT_MODES = ("none", "fixed", "new")
FIXED_PROMPTS = ("red circle", "sky")
#: Every three-letter word, in order: "aaa", "aab", ... (at most 3 BPE tokens each).
_WORDS = ["".join(letters) for letters in itertools.product(string.ascii_lowercase, repeat=3)]


def rss_mib() -> float:
    """The process's resident set size in MiB."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (Linux), bytes (macOS)
        return peak / (2**20 if sys.platform == "darwin" else 2**10)


def new_prompts(call: int, count: int = 2) -> List[str]:
    """``count`` three-letter prompts that no earlier call used (cycling after 17576 words)."""
    return [_WORDS[(call * count + i) % len(_WORDS)] for i in range(count)]


def soak(
    call: Callable[[int], object],
    num_calls: int,
    warmup_calls: int,
    report_every: int,
    log: Callable[[str], None] = print,
) -> Dict[str, float]:
    """Runs ``call(i)`` for i in 0..num_calls-1 and measures RSS after the warm-up and every
    ``report_every`` calls (after a garbage collection). Returns the summary of the JSON line."""
    if not 0 <= warmup_calls < num_calls:
        raise ValueError(f"--warmup {warmup_calls} must be in [0, -n {num_calls})")
    start = None
    for i in range(num_calls):
        if i == warmup_calls:
            gc.collect(1)  # the young generations: garbage of the recent calls
            start = rss_mib()
            log(f"after {i:>7} warm-up calls: RSS {start:9.1f} MiB")
        call(i)
        done = i + 1
        if done > warmup_calls and (done % report_every == 0 or done == num_calls):
            gc.collect(1)  # the young generations: garbage of the recent calls
            rss = rss_mib()
            log(f"after {done:>7} calls:         RSS {rss:9.1f} MiB ({rss - start:+.1f} MiB)")
    growth = rss - start
    measured = num_calls - warmup_calls
    return {
        "calls": num_calls,
        "warmup_calls": warmup_calls,
        "rss_after_warmup_mib": round(start, 1),
        "rss_end_mib": round(rss, 1),
        "growth_mib": round(growth, 1),
        "growth_per_1000_calls_mib": round(growth * 1000 / measured, 2),
    }


def predictor_call(predictor: Predictor, image, prompts: str) -> Callable[[int], None]:
    """The work of call i for a --prompts mode: the prediction, then the score maps."""

    def call(i: int) -> None:
        predictor(image)
        if prompts != "none":
            predictor.score_maps(
                image, list(FIXED_PROMPTS) if prompts == "fixed" else new_prompts(i)
            )

    return call


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE", help="LazyConfig file")
    parser.add_argument("--weights", help="checkpoint (default: train.init_checkpoint)")
    parser.add_argument("-n", "--num-calls", type=int, default=10000, help="calls (10000)")
    parser.add_argument(
        "--prompts", choices=PROMPT_MODES, default="new", help="score maps of which prompts"
    )
    parser.add_argument("--warmup", type=int, help="calls before the first measurement (N/10)")
    parser.add_argument("--report-every", type=int, help="calls between reports (N/10)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--device", help="cpu, cuda, ... (default: train.device)")
    parser.add_argument("--max-growth-mib", type=float, help="exit with status 1 above this")
    add_config_arguments(parser, "register a dataset folder first, as train_net.py does")
    return parser


def main(argv=None) -> Dict[str, float]:
    args = argument_parser().parse_args(argv)
    setup_logger()

    cfg, _ = load_config(args.config_file, args.opts, args.dataset)
    predictor = Predictor(cfg, args.weights, device=args.device)
    image, _ = generate_sample(seed=0, split_index=0, index=0, image_size=tuple(args.size))
    tenth = max(args.num_calls // 10, 1)
    warmup = tenth if args.warmup is None else args.warmup
    summary = soak(
        predictor_call(predictor, image, args.prompts),
        args.num_calls,
        warmup,
        args.report_every or tenth,
    )
    summary["prompts"] = args.prompts
    print(json.dumps(summary))
    if args.max_growth_mib is not None and summary["growth_mib"] > args.max_growth_mib:
        print(
            f"RSS grew by {summary['growth_mib']} MiB, more than --max-growth-mib "
            f"{args.max_growth_mib}",
            file=sys.stderr,
        )
        sys.exit(1)
    return summary


if __name__ == "__main__":
    main()
