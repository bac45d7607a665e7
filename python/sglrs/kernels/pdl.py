"""Programmatic dependent launch (PDL, Hopper and later) for the decode kernels.

A decode step at batch 1 is ~300 short kernels in a row; between two of them the GPU drains
the first one's last wave, then launches and ramps up the next. With PDL each kernel lets its
successor launch at once (`gdc_launch_dependents` first thing), the successor's programs sit
on free SMs and start reading what does not depend on the predecessor (a GEMV's weights, into
L2) and then wait for it (`gdc_wait`: the predecessor finished and its writes are visible)
before reading its inputs or writing anything. Every kernel launched with PDL must wait before
touching data another kernel writes; kernels launched without it are ordered as usual.

Only launches over at most `PDL_MAX_ROWS` rows use it: small decode batches, where launch
gaps are a visible share of the step (Llama-3.1-8B batch 1 on an H100: 5.47 -> 5.39 ms per
step); large batches and prefill keep plain launches. Off on the CPU (the Triton interpreter),
before compute capability 9.0, or with `SGLRS_DISABLE_PDL=1` (to measure what it saves).
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl


@functools.cache
def _device_supports_pdl(index: int) -> bool:
    return torch.cuda.get_device_capability(index)[0] >= 9


PDL_MAX_ROWS = 64


def use_pdl(x: torch.Tensor, rows: int) -> bool:
    """Whether a kernel over `rows` rows of `x` launches with PDL (a CUDA tensor on sm_90+,
    at most `PDL_MAX_ROWS` rows, not disabled)."""
    if not x.is_cuda or rows > PDL_MAX_ROWS or os.environ.get("SGLRS_DISABLE_PDL") == "1":
        return False
    return _device_supports_pdl(x.device.index)  # a CUDA tensor's device has its index


@triton.jit
def pdl_launch_dependents(USE_PDL: tl.constexpr):
    """Let the next kernel in the stream launch now (its programs wait in `pdl_wait`)."""
    if USE_PDL:
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def prefetch_l2(ptrs):
    """Start reading the lines at `ptrs` into L2 (no registers, no wait): for data that no
    kernel of the step writes, such as weights, read before `pdl_wait`."""
    tl.inline_asm_elementwise(
        "prefetch.global.L2 [$1]; // dummy $0", "=r,l", [ptrs], dtype=tl.int32, is_pure=False,
        pack=1,
    )  # fmt: skip


@triton.jit
def pdl_wait(USE_PDL: tl.constexpr):
    """Block until the previous kernel in the stream finished and its writes are visible."""
    if USE_PDL:
        tl.extra.cuda.gdc_wait()
