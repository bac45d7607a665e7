"""float32 linear layers on AVX-512 through the Rust kernel of `crates/cpu_attn` (`f32_linear`):
the weight packed once in the order the kernel streams it, with prefetching.

A float32 decode step's linear layers at one row read each weight once (MKL's GEMV does that
well); at tens of rows oneDNN's matmul on SmolLM2's shapes runs at ~110 GFLOP/s on the 2-core
host, its loads of a cold weight waiting on memory. This kernel streams the packed weight once
per call with up to 12 rows in registers. Only float32 CPU weights whose output size is a
multiple of 32 are packed (others keep oneDNN); `SGLRS_DISABLE_F32_LINEAR=1` turns it off, to
compare.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from sglrs import _core

DISABLE_ENV = "SGLRS_DISABLE_F32_LINEAR"


@functools.cache
def _cpu_has_avx512() -> bool:
    return bool(_core.f32_linear_available())


def available() -> bool:
    """Whether this CPU runs the kernel and it is not disabled."""
    return os.environ.get(DISABLE_ENV) != "1" and _cpu_has_avx512()


@dataclass(frozen=True)
class F32Weight:
    """A `[n, k]` float32 weight in the kernel's packed layout (`data`: `n * k` values)."""

    data: torch.Tensor
    n: int
    k: int


def pack(weight: torch.Tensor) -> F32Weight | None:
    """The packed copy of a CPU float32 `[n, k]` weight, or None where the kernel does not take
    it (another dtype or device, `n` not a multiple of 32, no AVX-512)."""
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or weight.dim() != 2:
        return None
    n, k = weight.shape
    if n == 0 or k == 0 or n % 32 or not available():
        return None
    w = weight.detach().contiguous()
    data = torch.empty(n * k, dtype=torch.float32)
    _core.f32_pack(weight_ptr=w.data_ptr(), n=n, k=k, out_ptr=data.data_ptr())
    return F32Weight(data, n, k)


def linear(x: torch.Tensor, weight: F32Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`x @ W.T (+ bias)` for float32 `x` `[..., k]`."""
    if x.dtype != torch.float32 or x.shape[-1] != weight.k:
        raise ValueError(
            f"f32 linear takes float32 [..., {weight.k}] rows, got {x.dtype} {tuple(x.shape)}"
        )
    x = x.contiguous()
    m = x.numel() // weight.k
    out = torch.empty((*x.shape[:-1], weight.n), dtype=torch.float32)
    if bias is not None:
        bias = bias.to(torch.float32).contiguous()
    _core.f32_linear(x_ptr=x.data_ptr(), m=m, k=weight.k, packed_ptr=weight.data.data_ptr(),
                     n=weight.n, bias_ptr=None if bias is None else bias.data_ptr(),
                     out_ptr=out.data_ptr(), num_threads=torch.get_num_threads())  # fmt: skip
    return out
