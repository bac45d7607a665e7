"""bfloat16 linear layers on the CPU's AMX tiles through the Rust kernel of `crates/cpu_attn`
(`amx_linear`): the weight packed once in the order the kernel streams it, with prefetching.

A decode step's linear layers are bound by reading their weights from memory. oneDNN's AMX
matmul reads a cold weight at ~7.5 GB/s on the 2-core Sapphire Rapids guest (its tile loads
wait on memory one at a time); this kernel reads it at ~18 GB/s, of ~21 the cores can stream.
Only bfloat16 CPU weights whose sizes are multiples of 32 are packed (others keep oneDNN);
`SGLRS_DISABLE_AMX_LINEAR=1` turns it off, to compare.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from sglrs import _core

DISABLE_ENV = "SGLRS_DISABLE_AMX_LINEAR"


@functools.cache
def _cpu_has_amx() -> bool:
    return bool(_core.amx_linear_available())


def available() -> bool:
    """Whether this CPU runs the kernel and it is not disabled."""
    return os.environ.get(DISABLE_ENV) != "1" and _cpu_has_amx()


@dataclass(frozen=True)
class AmxWeight:
    """A `[n, k]` bfloat16 weight in the kernel's packed layout (`data`: `n * k` values)."""

    data: torch.Tensor
    n: int
    k: int


def pack(weight: torch.Tensor) -> AmxWeight | None:
    """The packed copy of a CPU bfloat16 `[n, k]` weight, or None where the kernel does not
    take it (another dtype or device, sizes not multiples of 32, no AMX)."""
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or weight.dim() != 2:
        return None
    n, k = weight.shape
    if n == 0 or k == 0 or n % 32 or k % 32 or not available():
        return None
    w = weight.detach().contiguous()
    data = torch.empty(n * k, dtype=torch.bfloat16)
    _core.amx_pack_bf16(weight_ptr=w.data_ptr(), n=n, k=k, out_ptr=data.data_ptr())
    return AmxWeight(data, n, k)


def linear(
    x: torch.Tensor,
    weight: AmxWeight,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """`x @ W.T (+ bias)` for bfloat16 `x` `[..., k]`, in `out_dtype` (bfloat16, or float32
    for the LM head's logits: the f32 sums without a bf16 rounding)."""
    if x.dtype != torch.bfloat16 or x.shape[-1] != weight.k:
        raise ValueError(
            f"amx linear takes bfloat16 [..., {weight.k}] rows, got {x.dtype} {tuple(x.shape)}"
        )
    if out_dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"amx linear writes bfloat16 or float32, not {out_dtype}")
    x = x.contiguous()
    m = x.numel() // weight.k
    out = torch.empty((*x.shape[:-1], weight.n), dtype=out_dtype)
    if bias is not None:
        bias = bias.to(torch.bfloat16).contiguous()
    _core.amx_linear_bf16(x_ptr=x.data_ptr(), m=m, k=weight.k, packed_ptr=weight.data.data_ptr(),
                          n=weight.n, bias_ptr=None if bias is None else bias.data_ptr(),
                          out_ptr=out.data_ptr(), out_f32=out_dtype == torch.float32,
                          num_threads=torch.get_num_threads())  # fmt: skip
    return out
