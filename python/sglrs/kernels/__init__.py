"""Triton kernels of the GPU path (the repository's top-level `kernels/` points here).

Each module holds one fused operation and a plain-Python launcher. The model layers use them
for CUDA tensors; the tests also run them on CPU tensors under the Triton interpreter.
"""

from __future__ import annotations

import functools
import os

import torch


@functools.cache
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def use_triton(x: torch.Tensor) -> bool:
    """Whether the fused Triton kernels should handle `x`: CUDA tensors when Triton is
    installed, unless `SGLRS_DISABLE_TRITON_KERNELS=1` (to compare with the torch path)."""
    if not x.is_cuda or os.environ.get("SGLRS_DISABLE_TRITON_KERNELS") == "1":
        return False
    return triton_available()
