"""RMSNorm, optionally fused with the residual add that precedes it (one pass over the row)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sglrs.kernels.pdl import pdl_launch_dependents, pdl_wait, use_pdl


@triton.jit
def _rmsnorm_kernel(
    x_ptr,
    res_ptr,
    w_ptr,
    out_ptr,
    res_out_ptr,
    x_stride,
    res_stride,
    out_stride,
    res_out_stride,
    n_cols,
    eps,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_PDL: tl.constexpr,
):
    pdl_launch_dependents(USE_PDL)
    pdl_wait(USE_PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * res_stride + cols, mask=mask, other=0.0)
        # Round the sum to the activation dtype, as the unfused `x + residual` does.
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x.dtype)
        tl.store(res_out_ptr + row * res_out_stride + cols, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = tl.rsqrt(tl.sum(xf * xf, axis=0) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    y = (xf * rstd).to(x.dtype).to(tl.float32) * w.to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def rmsnorm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """`weight * norm(x)`; with `residual`, returns `(norm(x + residual), x + residual)`.

    `x` and `residual` are `[rows, hidden]` with unit stride in the last dimension."""
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    rows, n = x2.shape
    out = torch.empty_like(x2, dtype=x.dtype)
    block = triton.next_power_of_2(n)
    warps = min(max(block // 256, 1), 8)
    pdl = use_pdl(x, x2.shape[0])
    if residual is None:
        _rmsnorm_kernel[(rows,)](
            x2, x2, weight, out, out, x2.stride(0), 0, out.stride(0), 0, n, eps,
            HAS_RESIDUAL=False, BLOCK=block, USE_PDL=pdl, launch_pdl=pdl, num_warps=warps,
        )  # fmt: skip
        return out.view(shape)
    r2 = residual.reshape(-1, shape[-1])
    res_out = torch.empty_like(x2)
    _rmsnorm_kernel[(rows,)](
        x2, r2, weight, out, res_out, x2.stride(0), r2.stride(0), out.stride(0),
        res_out.stride(0), n, eps, HAS_RESIDUAL=True, BLOCK=block, USE_PDL=pdl, launch_pdl=pdl,
        num_warps=warps,
    )  # fmt: skip
    return out.view(shape), res_out.view(shape)
