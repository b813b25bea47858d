"""Keep glibc's malloc from handing the training step's memory back to the kernel every step.

A local pass allocates and frees the same tens of MB every SGD step (logits and their
gradients over the vocabulary). With glibc's defaults the freed top of the heap is often
trimmed (returned to the kernel) and grown again on the next step, so every step pays
page faults: measured on the demo model, 10.3 M minor faults and 25 s of system time in a
110 s run of 100-client rounds, 35 s per round instead of 25 s, and whether a process falls
into that pattern depends on its allocation history, so two identical runs differed by 30 %
(docs/performance.md). A fixed trim threshold stops it (and, as glibc documents, also turns
off its dynamic mmap threshold, which is what let the pattern depend on history).

Called once per process that trains or evaluates (ClientApp workers, the ServerApp, the
benchmarks' pure-compute baseline). ``FL_SIM_MALLOC_TUNING=0`` leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameter numbers from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: Free memory at the top of the heap kept before trimming: above any one step's working set.
TRIM_THRESHOLD = 1 << 30
#: Allocations served by their own mmap: glibc's maximum, so tensors of a step reuse the heap.
MMAP_THRESHOLD = 32 << 20

_done: bool | None = None


def tune_malloc() -> bool:
    """Apply the thresholds above once per process; True if glibc accepted them.

    A no-op (False) on a C library without ``mallopt`` (musl, macOS) or when
    ``FL_SIM_MALLOC_TUNING=0``.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("FL_SIM_MALLOC_TUNING", "1") == "0":
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return _done
