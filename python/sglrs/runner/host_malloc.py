"""glibc malloc settings for a CPU model runner: keep freed activation memory for reuse.

A CPU prefill chunk allocates tens of MB of activations per layer (SmolLM2 at 2048 tokens:
~38 MB, the gate/up output alone 12.6 MB). glibc serves blocks that large with a fresh mmap
and unmaps them on free, so every layer of every step page-faults its activations in again,
zeroed by the kernel: ~280k faults per 2048-token prefill, ~15-20% of its time on the 2-core
host. Raising the mmap threshold to its maximum and keeping freed memory at the top of the heap
(tcmalloc/jemalloc, which vLLM's CPU backend preloads, behave alike) makes later steps reuse
it. The process keeps its peak heap instead of returning it to the OS.

`SGLRS_DISABLE_MALLOC_TUNING=1` leaves glibc's defaults, to compare.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

DISABLE_ENV = "SGLRS_DISABLE_MALLOC_TUNING"
# mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
# glibc's upper bound for M_MMAP_THRESHOLD on 64-bit (HEAP_MAX_SIZE / 2); larger is refused.
MMAP_THRESHOLD_MAX = 32 << 20
SETTINGS = (
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
    (M_TRIM_THRESHOLD, 1 << 30),  # give memory back only past 1 GiB free at the heap top
    (M_TOP_PAD, 64 << 20),  # grow the heap in 64 MiB steps
)


def keep_freed_memory() -> bool:
    """Apply the settings in this process (glibc only; idempotent). Returns whether all were
    applied."""
    if os.environ.get(DISABLE_ENV) == "1" or platform.libc_ver()[0] != "glibc":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
