"""silu(gate) * up over the fused [gate | up] projection, in one pass."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _silu_and_mul_kernel(
    x_ptr, out_ptr, x_stride, out_stride, d, BLOCK: tl.constexpr, USE_PDL: tl.constexpr
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < d
    gate = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0)
    up = tl.load(x_ptr + row * x_stride + d + cols, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    # Round silu to the activation dtype first, as the unfused `silu(gate) * up` does.
    act = (g / (1.0 + tl.exp(-g))).to(gate.dtype)
    y = act.to(tl.float32) * up.to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, y.to(gate.dtype), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """`[rows, 2d] -> [rows, d]`."""
    rows, two_d = x.shape
    d = two_d // 2
    out = torch.empty((rows, d), dtype=x.dtype, device=x.device)
    if rows == 0:
        return out
    block = min(triton.next_power_of_2(d), 1024)
    pdl = use_pdl(x, rows)
    _silu_and_mul_kernel[(rows, triton.cdiv(d, block))](
        x,
        out,
        x.stride(0),
        out.stride(0),
        d,
        BLOCK=block,
        USE_PDL=pdl,
        launch_pdl=pdl,
        num_warps=4,
    )
    return out
