"""``denseclip.engine.host_memory``: freed host memory kept for the next allocation (CPU training
and the benchmark's CPU timings). Each measurement runs in a fresh process, whose malloc it
changes."""

import json
import subprocess
import sys

import pytest

# mallinfo2 (glibc ≥ 2.33): hblks = blocks mapped on their own, fordblks = free bytes in the heap
_MEASURE = """
import ctypes, json, sys
import torch
from denseclip.engine.host_memory import keep_freed_host_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
taken = keep_freed_host_memory() if sys.argv[1] == "keep" else None
mapped_before = libc.mallinfo2().hblks
tensor = torch.ones(2**24)  # 64 MiB
mapped_while_alive = libc.mallinfo2().hblks - mapped_before
del tensor
info = libc.mallinfo2()
print(json.dumps({"taken": taken, "mapped_while_alive": mapped_while_alive,
                  "free_in_heap_mb": info.fordblks / 2**20}))
"""


def _measure(mode: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, mode], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout.splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_freed_large_tensor_stays_in_the_heap_for_the_next_one():
    kept, released = _measure("keep"), _measure("release")
    assert kept["taken"] is True
    # glibc's default maps the 64 MiB block on its own and returns it to the system when freed
    assert released["mapped_while_alive"] == 1 and released["free_in_heap_mb"] < 64
    assert kept["mapped_while_alive"] == 0 and kept["free_in_heap_mb"] >= 64
