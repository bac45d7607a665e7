"""Where the kernel tests run: CUDA when present, else the Triton interpreter on the CPU
(tests/conftest.py sets `TRITON_INTERPRET=1` before triton is imported when there is no GPU).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest
import torch

try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except ImportError:
    HAVE_TRITON = False

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
INTERPRETED = DEVICE.type == "cpu"

requires_triton = pytest.mark.skipif(not HAVE_TRITON, reason="triton is not installed")


def load_kernel(name: str) -> ModuleType:
    """Import `sglrs.kernels.<name>` (interpreted on the CPU)."""
    if not HAVE_TRITON:
        pytest.skip("triton is not installed")
    if INTERPRETED and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no GPU, and triton was imported before TRITON_INTERPRET=1 was set")
    return importlib.import_module(f"sglrs.kernels.{name}")


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    assert torch.isfinite(out).all()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


DTYPES = [torch.float32] + ([torch.bfloat16] if not INTERPRETED else [])
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
