"""Host (CPU) memory reuse for training on the CPU, as CUDA's caching allocator reuses GPU memory.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc maps every block above its
mmap threshold (at most 32 MiB) afresh and unmaps it when freed, so each large activation of a
training step (a 512² ADE20K crop's full-resolution logits alone are 157 MB) costs the kernel its
page faults and zeroing again at every step. Raising the threshold and the trim threshold keeps
freed blocks in the process for the next allocation instead.
"""

import ctypes
import logging
import platform
import sys

__all__ = ["keep_freed_host_memory"]

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest value mallopt takes (an int): blocks above 2 GiB are still mapped afresh.
_LARGEST = 2**31 - 1


def keep_freed_host_memory() -> bool:
    """Have glibc's malloc serve blocks up to 2 GiB from its heap and keep what is freed there
    (``mallopt(M_MMAP_THRESHOLD)``, ``mallopt(M_TRIM_THRESHOLD)``), for the rest of the process.

    The process then holds on to its peak host memory instead of returning freed memory to the
    system. Returns whether the settings were taken: False, changing nothing, where the C library
    is not glibc.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    taken = all(libc.mallopt(p, _LARGEST) == 1 for p in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
    if not taken:
        logger.warning("glibc refused the malloc settings that keep freed host memory")
    return taken
